"""Command line: `inventory-sink` or `python -m service`."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from service.config.settings import ConfigurationError, Settings, get_settings
from service.observability.logs import configure_logging


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from alembic import command

    from service.postgres.schema_gate import alembic_config

    config = alembic_config()
    config.attributes["settings"] = settings  # migrations/env.py uses these, not its own
    # Logging is already set up (LOG_LEVEL, LOG_FORMAT): alembic.ini's must not replace it.
    config.attributes["configure_logger"] = False
    if args.downgrade:
        if args.revision == "head":
            print(
                "error: name the revision to go down to: migrate --downgrade REV", file=sys.stderr
            )
            return 2
        command.downgrade(config, args.revision)
    else:
        command.upgrade(config, args.revision)
    return 0


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
    runner(serve(app, options))  # a start that fails raises StartFailed: one line, exit 1
    return 0


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        return asyncio.run
    return uvloop.run


def _publish(args: argparse.Namespace, settings: Settings) -> int:
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
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.status import print_products

    asyncio.run(print_products(settings, include_deleted=not args.live))
    return 0


def _lag(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.status import print_lag

    return 0 if asyncio.run(print_lag(settings, args.wait)) else 1


def _dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.status import print_dead_letters

    asyncio.run(print_dead_letters(settings, args.count, args.last))
    return 0


def _replay_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.replay import replay_command

    return replay_command(settings, args)


def _contract(args: argparse.Namespace, settings: Settings | None) -> int:
    from service.core.contract import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _create_topics(args: argparse.Namespace, settings: Settings) -> int:
    from service.kafka.topics import ensure_topics

    create = {settings.kafka_topic: "Create", settings.kafka_dlq_topic: "Create"}
    asyncio.run(ensure_topics(settings, needs=create))
    print(f"topics ready: {settings.kafka_topic}, {settings.kafka_dlq_topic}")
    return 0


def _positions(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli import positions

    if args.action == "reset":
        partitions = None if args.all else args.partition
        return asyncio.run(positions.reset(settings, partitions, args.to, args.dry_run, args.force))
    return 0 if asyncio.run(positions.print_report(settings)) else 1


def _add_positions(sub: Any) -> None:
    positions = sub.add_parser(
        "positions", help="stored positions next to the log's; `positions reset` changes them"
    )
    positions.set_defaults(func=_positions, action="show")
    actions = positions.add_subparsers(dest="action")
    reset = actions.add_parser("reset", help="set stored positions (see README: Operations)")
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument("--partition", type=int, action="append", help="repeat for several")
    which.add_argument("--all", action="store_true", help="every partition of KAFKA_TOPIC")
    reset.add_argument("--to", required=True, help="log-start, log-end or an offset")
    reset.add_argument("--dry-run", action="store_true", help="show the change, make none")
    reset.add_argument(
        "--force", action="store_true", help="also move partitions a running consumer owns"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inventory-sink", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="apply database migrations (alembic upgrade)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument(
        "--downgrade",
        action="store_true",
        help="go down to REVISION (alembic downgrade), e.g. to roll back to an older release",
    )
    migrate.set_defaults(func=_migrate)

    sub.add_parser("run", help="run the consumer (with /health and /metrics)").set_defaults(
        func=_run
    )

    publish = sub.add_parser("publish", help="publish product events to KAFKA_TOPIC")
    source = publish.add_mutually_exclusive_group(required=True)
    source.add_argument("--sample", action="store_true", help="a small demo story of events")
    source.add_argument(
        "--file", help="JSON lines: one event per line (key = product_id), or - for stdin"
    )
    publish.add_argument("--run", default="demo", help="seed for the sample's event ids")
    publish.set_defaults(func=_publish)

    show = sub.add_parser("show", help="print the products table")
    show.add_argument("--live", action="store_true", help="hide deleted products")
    show.set_defaults(func=_show)

    lag = sub.add_parser("lag", help="records on KAFKA_TOPIC not yet applied, per partition")
    lag.add_argument("--wait", type=float, default=0, help="poll up to this many seconds")
    lag.set_defaults(func=_lag)

    dead = sub.add_parser("dead-letters", help="show the latest dead letters with reasons")
    dead.add_argument("--count", action="store_true", help="print only how many there are")
    dead.add_argument("--last", type=int, default=20)
    dead.set_defaults(func=_dead_letters)
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
    replay.set_defaults(func=_replay_dead_letters)

    sub.add_parser("contract", help="print the event contract as JSON Schema").set_defaults(
        func=_contract, needs_settings=False
    )
    from service.cli.validate import add_validate

    add_validate(sub)  # `validate FILE|-`: offline, needs no settings
    sub.add_parser("create-topics", help="create the input and DLQ topics").set_defaults(
        func=_create_topics
    )
    _add_positions(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "needs_settings", True):
        return int(args.func(args, None))
    try:
        settings = get_settings()
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from service.cli.explain import explain

        message = explain(error, settings)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
