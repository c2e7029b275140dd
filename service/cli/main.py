"""Command line: `inventory-sink` or `python -m service`.

Each command declares the settings it reads (`settings=` in build_parser: a class of
service/config/settings.py, or None), so a Kafka-only command asks for no database password
and `contract` for nothing. Every failure ends in one `error: <problem>; <fix>` line and an
exit code of service/cli/exit_codes.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from service.cli.exit_codes import CommandError, ExitCode
from service.config.settings import (
    BrokerSettings,
    ConfigurationError,
    DatabaseSettings,
    KafkaSettings,
    LogSettings,
    Settings,
    SettingsGroup,
    StoreAndBrokerSettings,
    load_settings,
)
from service.observability.logs import brief, configure_logging, failure_line

log = logging.getLogger("service.cli")


def _migrate(args: argparse.Namespace, settings: DatabaseSettings) -> int:
    from service.cli.migrate import migrate

    return migrate(settings, args.revision, args.downgrade, args.yes, args.dry_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from service.app import create_app
    from service.cli.serving import serve
    from service.postgres.schema_gate import check_before_start

    check_before_start(settings)  # refuse an incompatible schema in one line (MIGRATIONS.md)
    app = create_app(settings)
    # uvicorn shuts the app down gracefully on SIGTERM (finishing the batch in flight), then
    # re-raises the signal: make that final SIGTERM a clean exit, as orchestrators expect.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    runner = _event_loop_runner()
    options: dict[str, Any] = {"host": settings.http_host, "port": settings.http_port}
    options["log_config"] = None  # uvicorn's own lines go through our handler too
    runner(serve(app, options))  # a start that fails raises StartFailed: one line
    return ExitCode.OK


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        return asyncio.run
    return uvloop.run


def _publish(args: argparse.Namespace, settings: BrokerSettings) -> int:
    from service.cli.sample import sample_events
    from service.kafka.publisher import publish_pairs, read_jsonl
    from service.kafka.topics import ensure_topics

    if args.sample:
        pairs = sample_events(args.run)
    else:
        pairs = read_jsonl(Path(args.file) if args.file != "-" else None)

    async def go() -> None:
        await ensure_topics(
            settings, needs={settings.kafka_topic: "Write", settings.kafka_dlq_topic: "Describe"}
        )
        await publish_pairs(settings, settings.kafka_topic, pairs)

    asyncio.run(go())
    print(f"published {len(pairs)} records to {settings.kafka_topic}")
    return ExitCode.OK


def _show(args: argparse.Namespace, settings: DatabaseSettings) -> int:
    from service.cli.status import print_products

    asyncio.run(print_products(settings, not args.live, args.limit, args.json))
    return ExitCode.OK


def _lag(args: argparse.Namespace, settings: StoreAndBrokerSettings) -> int:
    from service.cli.status import print_lag

    caught_up = asyncio.run(print_lag(settings, args.wait, args.json))
    return ExitCode.OK if caught_up else ExitCode.ATTENTION


def _dead_letters(args: argparse.Namespace, settings: BrokerSettings) -> int:
    from service.cli.status import print_dead_letters

    asyncio.run(print_dead_letters(settings, args.count, args.last, args.json))
    return ExitCode.OK


def _replay_dead_letters(args: argparse.Namespace, settings: BrokerSettings) -> int:
    from service.cli.replay import replay_command

    return replay_command(settings, args)


def _contract(args: argparse.Namespace, settings: None) -> int:
    from service.core.contract import json_schema

    print(json.dumps(json_schema(), indent=2))
    return ExitCode.OK


def _create_topics(args: argparse.Namespace, settings: BrokerSettings) -> int:
    from service.kafka.topics import ensure_topics

    create = {settings.kafka_topic: "Create", settings.kafka_dlq_topic: "Create"}
    asyncio.run(ensure_topics(settings, needs=create))
    print(f"topics ready: {settings.kafka_topic}, {settings.kafka_dlq_topic}")
    return ExitCode.OK


def _positions(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli import positions

    if args.action == "reset":
        partitions = None if args.all else args.partition
        return asyncio.run(positions.reset(settings, partitions, args.to, args.dry_run, args.force))
    fine = asyncio.run(positions.print_report(settings, args.json))
    return ExitCode.OK if fine else ExitCode.ATTENTION


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )


def _add_positions(sub: Any) -> None:
    positions = sub.add_parser(
        "positions",
        help="stored positions next to the log's; `positions reset` changes them",
        description="Stored positions next to the log's, per partition of KAFKA_TOPIC. "
        "Exit 1 when a partition needs a decision.",
    )
    _add_json(positions)
    positions.set_defaults(func=_positions, action="show", settings=Settings)
    actions = positions.add_subparsers(dest="action")
    reset = actions.add_parser(
        "reset",
        help="set stored positions (see README: Operations)",
        description="Set the stored positions of partitions of KAFKA_TOPIC.",
    )
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument("--partition", type=int, action="append", help="repeat for several")
    which.add_argument("--all", action="store_true", help="every partition of KAFKA_TOPIC")
    reset.add_argument("--to", required=True, help="log-start, log-end or an offset")
    reset.add_argument("--dry-run", action="store_true", help="show the change, make none")
    reset.add_argument(
        "--force", action="store_true", help="also move partitions a running consumer owns"
    )


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from service.core.contract import CONTRACT_VERSION

    try:
        package = version("inventory-sink")
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        package = "unknown"
    return f"inventory-sink {package} (event contract version {CONTRACT_VERSION})"


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors end in the `error:` line every failure ends in."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="inventory-sink", description=__doc__)
    parser.add_argument(
        "--version",
        action="version",
        version=version_text(),
        help="print the package version and the event contract version",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations (alembic upgrade)",
        description="Bring the schema to REVISION (default head), or down to it with "
        "--downgrade. A downgrade names the data each step drops first, and drops data only "
        "with --yes.",
    )
    migrate.add_argument(
        "revision", nargs="?", default="head", help="the revision to go to (default: head)"
    )
    migrate.add_argument(
        "--downgrade",
        action="store_true",
        help="go down to REVISION (alembic downgrade), e.g. to roll back to an older release",
    )
    migrate.add_argument(
        "--yes", action="store_true", help="a downgrade may drop the data it names"
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="list the steps (and the data they drop) only"
    )
    migrate.set_defaults(func=_migrate, settings=DatabaseSettings)

    sub.add_parser(
        "run",
        help="run the consumer (with /health and /metrics)",
        description="Run the consumer, serving /health and /metrics on HTTP_HOST:HTTP_PORT.",
    ).set_defaults(func=_run, settings=Settings)

    publish = sub.add_parser(
        "publish",
        help="publish product events to KAFKA_TOPIC",
        description="Publish product events to KAFKA_TOPIC (creating the topics if missing).",
    )
    source = publish.add_mutually_exclusive_group(required=True)
    source.add_argument("--sample", action="store_true", help="a small demo story of events")
    source.add_argument(
        "--file", help="JSON lines: one event per line (key = product_id), or - for stdin"
    )
    publish.add_argument("--run", default="demo", help="seed for the sample's event ids")
    publish.set_defaults(func=_publish, settings=BrokerSettings)

    show = sub.add_parser(
        "show",
        help="print the products table",
        description="Print the products table, by id, up to --limit rows.",
    )
    show.add_argument("--live", action="store_true", help="hide deleted products")
    show.add_argument(
        "--limit", type=_positive, default=100, help="print at most this many rows (100)"
    )
    _add_json(show)
    show.set_defaults(func=_show, settings=DatabaseSettings)

    lag = sub.add_parser(
        "lag",
        help="records on KAFKA_TOPIC not yet applied, per partition",
        description="Records on KAFKA_TOPIC not yet applied, per partition. Exit 1 while "
        "records are not yet applied.",
    )
    lag.add_argument("--wait", type=float, default=0, help="poll up to this many seconds")
    _add_json(lag)
    lag.set_defaults(func=_lag, settings=StoreAndBrokerSettings)

    dead = sub.add_parser(
        "dead-letters",
        help="show the latest dead letters with reasons",
        description="The latest dead letters of KAFKA_DLQ_TOPIC: where each came from, its "
        "key, event_id, reason and message.",
    )
    dead.add_argument("--count", action="store_true", help="print only how many there are")
    dead.add_argument("--last", type=_positive, default=20, help="how many to show (20)")
    _add_json(dead)
    dead.set_defaults(func=_dead_letters, settings=BrokerSettings)
    # `dead-letters replay` (dead-letters without an action still lists them)
    from service.cli.replay_selection import add_selection_arguments

    replay = dead.add_subparsers(dest="action", title="actions").add_parser(
        "replay",
        help="republish chosen dead letters to KAFKA_TOPIC (see --help)",
        description="Republish chosen dead letters from KAFKA_DLQ_TOPIC to KAFKA_TOPIC with "
        "their original key, value and headers (plus replayed.from), once their cause is "
        "fixed. Run it with --dry-run first.",
    )
    add_selection_arguments(replay)
    replay.set_defaults(func=_replay_dead_letters, settings=BrokerSettings)

    sub.add_parser(
        "contract",
        help="print the event contract as JSON Schema",
        description="Print the event contract as JSON Schema (needs no settings).",
    ).set_defaults(func=_contract, settings=None)
    from service.cli.validate import add_validate

    add_validate(sub)  # `validate FILE|-`: offline, needs no settings
    sub.add_parser(
        "create-topics",
        help="create the input and DLQ topics",
        description="Create KAFKA_TOPIC and KAFKA_DLQ_TOPIC if missing.",
    ).set_defaults(func=_create_topics, settings=BrokerSettings)
    _add_positions(sub)
    return parser


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kind: type[SettingsGroup] | None = getattr(args, "settings", None)
    if kind is None:
        return int(args.func(args, None))
    log_format = _start_logging()
    if args.func is not _run:
        # A command's Kafka failure ends in its own `error:` line with the fix; the client
        # library's connection errors before it would only repeat it (LOG_LEVEL=DEBUG shows
        # them). The consumer keeps them: they are its record of a broker going away.
        _quiet_kafka_client()
    # Before the settings are read: a misspelt name (POSTGRES_USRE) is often why a setting
    # is "not set", and the warning then comes before that error.
    _warn_about_unknown_settings()
    try:
        settings = load_settings(kind)
    except ConfigurationError as error:
        message, details = configuration_failure(str(error))
        return _fail(message, ExitCode.USAGE, log_format, details)
    try:
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except CommandError as error:
        return _fail(str(error), error.code, log_format)
    except Exception as error:
        from service.cli.explain import explain_failure

        kafka = settings if isinstance(settings, KafkaSettings) else None
        failure = explain_failure(error, kafka)
        if failure is None:
            log.debug("unexpected failure", exc_info=error)
            message = f"{brief(error)}; LOG_LEVEL=DEBUG logs the traceback"
            return _fail(message, ExitCode.FAILED, log_format)
        return _fail(failure.message, failure.code, log_format)


def _quiet_kafka_client() -> None:
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _start_logging() -> str:
    """Logging as LOG_LEVEL and LOG_FORMAT say, before the other settings are read, so that a
    configuration error is reported in the format asked for. A malformed LOG_* is reported
    with the rest; until then the defaults apply."""
    try:
        logging_settings = LogSettings()
    except ValidationError:
        logging_settings = LogSettings.model_construct()
    configure_logging(logging_settings.log_level, logging_settings.log_format)
    return logging_settings.log_format


def configuration_failure(report: str) -> tuple[str, list[str]]:
    """The `error:` message for a ConfigurationError's report (one line per bad variable),
    and the lines to show before it: the line itself when there is one, else how many."""
    lines = report.splitlines()
    if len(lines) == 1:
        return lines[0].removeprefix("configuration error: "), []
    message = (
        f"the settings have {len(lines)} problems (listed above); fix them in the environment "
        "or in .env"
    )
    return message, lines


def _warn_about_unknown_settings() -> None:
    from service.config.unknown import warnings_for

    for line in warnings_for():
        log.warning("%s", line)


def _fail(message: str, code: ExitCode, log_format: str, details: Sequence[str] = ()) -> int:
    print(failure_line(message, log_format, int(code), details), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
