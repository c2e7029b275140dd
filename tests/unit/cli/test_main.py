"""The command line's own surfaces: --version, the exit code of each kind of failure, and
one `error:` line for each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError

from service.cli import main as cli
from service.cli.exit_codes import EXIT_CODES, ExitCode
from service.cli.explain import explain_failure
from service.cli.serving import StartFailed
from service.config import local_stack
from service.postgres.schema_gate import SchemaNotReady


def test_version_names_the_package_and_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == "inventory-sink 0.1.0 (event contract version 1)"


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["show", "--limit", "0"])
    assert stop.value.code == ExitCode.USAGE
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: argument --limit: 0 is not a positive number; see `inventory-sink show --help`"
    )


def test_every_exit_code_is_documented_and_distinct() -> None:
    assert set(EXIT_CODES) == set(ExitCode)
    assert len({int(code) for code in ExitCode}) == len(ExitCode)


def failed_start(cause: BaseException) -> StartFailed:
    try:
        raise StartFailed(cause) from cause
    except StartFailed as error:
        return error


class ReadOnlySQLTransactionError(Exception):
    """Named as asyncpg names the SQLSTATE 25006 error."""


@pytest.mark.parametrize(
    ("error", "code", "start"),
    [
        (KafkaConnectionError("Unable to bootstrap"), ExitCode.UNAVAILABLE, "cannot reach Kafka"),
        (ConnectionRefusedError("Connect call failed"), ExitCode.UNAVAILABLE, "cannot connect"),
        (
            ReadOnlySQLTransactionError("cannot execute CREATE TABLE in a read-only transaction"),
            ExitCode.UNAVAILABLE,
            "PostgreSQL at POSTGRES_HOST takes no writes now",
        ),
        (
            failed_start(GroupAuthorizationFailedError("no")),
            ExitCode.UNAVAILABLE,
            "Kafka denied this client its consumer group",
        ),
        (SchemaNotReady("the schema is behind"), ExitCode.REFUSED, "the schema is behind"),
        (failed_start(ValueError("odd")), ExitCode.FAILED, "the consumer could not start"),
    ],
)
def test_each_failure_has_its_exit_code(error: BaseException, code: ExitCode, start: str) -> None:
    failure = explain_failure(error)
    assert failure is not None
    assert (failure.code, failure.message[: len(start)]) == (code, start)


def test_a_schema_check_that_cannot_reach_postgres_is_unavailable_not_refused() -> None:
    try:
        raise SchemaNotReady("cannot reach PostgreSQL") from OSError("Connect call failed")
    except SchemaNotReady as error:
        failure = explain_failure(error)
    assert failure is not None and failure.code == ExitCode.UNAVAILABLE
    # Its own line, naming the database alone (not a generic one naming Kafka's settings too).
    assert failure.message == "cannot reach PostgreSQL"


def test_hints_name_the_local_stack_only_where_it_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In the container image there is no scripts/local-stack: the hint is the setting."""
    failure = explain_failure(KafkaConnectionError("down"))
    assert failure is not None and "(locally: scripts/local-stack up)" in failure.message
    monkeypatch.setattr(local_stack, "LOCAL_STACK", tmp_path / "absent")
    failure = explain_failure(KafkaConnectionError("down"))
    assert failure is not None
    assert "local-stack" not in failure.message
    assert "check KAFKA_BOOTSTRAP_SERVERS and that the brokers run;" in failure.message


def test_an_unexplained_failure_is_one_error_line_with_exit_5(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setenv("POSTGRES_USER", "u")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p")
    monkeypatch.setenv("POSTGRES_DB", "d")
    monkeypatch.setattr(cli, "_show", broken)
    assert cli.main(["show"]) == ExitCode.FAILED
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: ZeroDivisionError: division by zero; LOG_LEVEL=DEBUG logs the traceback"
    )
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert cli.main(["show"]) == ExitCode.FAILED
    record = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert (record["level"], record["exit_code"]) == ("ERROR", 5)


def test_a_misspelt_setting_is_named_before_the_error_it_causes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("POSTGRES_USER", raising=False)
    monkeypatch.setenv("POSTGRES_USRE", "inventory")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p")
    monkeypatch.setenv("POSTGRES_DB", "d")
    assert cli.main(["show"]) == ExitCode.USAGE
    lines = capsys.readouterr().err.splitlines()
    warning = next(i for i, line in enumerate(lines) if "POSTGRES_USRE" in line)
    assert "did you mean POSTGRES_USER?" in lines[warning]
    assert lines[-1].startswith("error: POSTGRES_USER is not set") and warning < len(lines) - 1
