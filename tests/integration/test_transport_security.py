"""Kafka security reaches every client, end to end, and no secret is ever printed.

A throwaway broker listens with SASL_SSL (PLAIN and SCRAM) and with SSL requiring client
certificates, all from a CA made at test time. The real consumer (`python -m service run`),
its dead-letter producer and admin client, and the CLI (`create-topics`, `publish`, `lag`,
`dead-letters`) run against each listener. The tests inspect topics through the broker's
PLAINTEXT listener, independently of the service's security code.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli.exit_codes import ExitCode
from service.cli.sample import sample_events
from service.config.settings import Settings
from service.kafka.topics import partitions_of
from service.postgres.engine import connected
from testbed.oracle import diff, expected_outcome, table
from tests.conftest import make_settings
from tests.support.brokers import free_port
from tests.support.certs import make_ca
from tests.support.cli import run_cli
from tests.support.consumer import ConsumerProcess
from tests.support.kafka import header_map, read_topic
from tests.support.secure_kafka import SecureBroker, secure_broker
from tests.support.secure_postgres import SecuredPostgres, secured_postgres
from tests.support.services import PostgresEndpoint

PLAIN_USER, PLAIN_PASSWORD = "sink-plain", "Kp-plain-Q4v8/x@"
SCRAM_USER, SCRAM_PASSWORD = "sink-scram", "Ks-scram-R7w2/x@"
PG_PASSWORD = "Pg-tls-S3cr3t/Wv7%x@"
CLIENT_KEY_PASSWORD = "Kk-key-T9m3/x@"
WRONG = {"kafka": "Kw-wrong-Y5t1/x@", "postgres": "Pw-wrong-U2u6/x@", "key": "Kw-key-N8b4/x@"}
SECRETS = [PLAIN_PASSWORD, SCRAM_PASSWORD, PG_PASSWORD, CLIENT_KEY_PASSWORD, *WRONG.values()]
SAMPLE_REASONS = Counter(
    {"invalid_json": 1, "invalid_event": 1, "insufficient_stock": 1, "unknown_product": 1}
)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with secure_broker(
        tmp_path_factory.mktemp("kafka-pki"),
        plain_users={PLAIN_USER: PLAIN_PASSWORD},
        scram_users={SCRAM_USER: SCRAM_PASSWORD},
        client_key_password=CLIENT_KEY_PASSWORD,
    ) as broker:
        yield broker


def kafka_fields(secure: SecureBroker, mode: str, password: str | None = None) -> dict[str, object]:
    if mode == "SSL":
        return secure.settings("SSL")
    user, right = (PLAIN_USER, PLAIN_PASSWORD) if mode == "PLAIN" else (SCRAM_USER, SCRAM_PASSWORD)
    return secure.settings(mode, user, password or right)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def wait_for_http(port: int, path: str, status: int, process: ConsumerProcess) -> str:
    deadline = time.monotonic() + 90
    seen: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        try:
            seen = http_get(port, path)
            if seen[0] == status:
                return seen[1]
        except OSError:
            pass  # not listening yet
        assert process.alive(), process.tail()
        time.sleep(0.3)
    raise AssertionError(f"{path} never answered {status} (last: {seen}):\n{process.tail()}")


async def wait_for_sample(
    engine: AsyncEngine,
    settings: Settings,
    secure: SecureBroker,
    run: str,
    process: ConsumerProcess,
) -> None:
    """The sample's rows are in the table and its 4 bad records on the DLQ topic."""
    expected = expected_outcome(sample_events(run))
    deadline = time.monotonic() + 90
    problems: list[str] = ["not checked"]
    while problems and time.monotonic() < deadline and process.alive():
        problems = diff(expected.products, await table(engine))
        await asyncio.sleep(0.3)
    assert not problems, "\n".join(problems) + "\n" + process.tail()
    letters = await read_topic(secure.plaintext, settings.kafka_dlq_topic, expected.dead_letters)
    assert Counter(header_map(letter)["error.reason"] for letter in letters) == SAMPLE_REASONS


async def wait_for_sample_over_tls(
    settings: Settings, secure: SecureBroker, run: str, process: ConsumerProcess
) -> None:
    """wait_for_sample, reading the table through the service's own (TLS) engine."""
    async with connected(settings) as engine:
        await wait_for_sample(engine, settings, secure, run, process)


def start_consumer(settings: Settings, tmp_path: Path, name: str) -> tuple[ConsumerProcess, int]:
    process = ConsumerProcess(settings, tmp_path, name)
    port = free_port()
    process.env.update(HTTP_PORT=str(port), HTTP_HOST="127.0.0.1")
    process.start()
    return process, port


@pytest.mark.parametrize("mode", ["PLAIN", "SCRAM-SHA-256", "SSL"])
async def test_consumer_dead_letters_and_cli_over_a_secured_listener(
    secure: SecureBroker,
    pg: PostgresEndpoint,
    names: dict[str, str],
    engine: AsyncEngine,
    tmp_path: Path,
    mode: str,
) -> None:
    settings = make_settings(pg, secure.plaintext, names, **kafka_fields(secure, mode))
    created = await asyncio.to_thread(run_cli, settings, "create-topics")
    assert created.returncode == 0, created.stderr
    # Seen through the broker's plaintext listener, not the one under test.
    plaintext = make_settings(pg, secure.plaintext, names)
    assert await partitions_of(plaintext, settings.kafka_topic) == [0, 1, 2]
    published = await asyncio.to_thread(run_cli, settings, "publish", "--sample", "--run", mode)
    assert published.returncode == 0, published.stderr
    assert f"published {len(sample_events(mode))} records" in published.stdout

    consumer, port = start_consumer(settings, tmp_path, f"consumer-{mode}")
    try:
        await wait_for_sample(engine, settings, secure, mode, consumer)
        lag = await asyncio.to_thread(run_cli, settings, "lag", "--wait", "30")
        assert lag.returncode == 0, lag.stderr
        assert lag.stdout.strip().endswith("caught up")
        dead = await asyncio.to_thread(run_cli, settings, "dead-letters", "--count")
        assert (dead.returncode, dead.stdout.strip()) == (0, "4"), dead.stderr
        status, body = await asyncio.to_thread(http_get, port, "/health")
        assert (status, json.loads(body)["checks"]["kafka"]) == (200, {"ok": True})
        assert consumer.stop() == 0
    finally:
        consumer.kill()


LOGIN = "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"


@pytest.mark.parametrize(
    ("mode", "change", "broker_says", "setting"),
    [
        ("PLAIN", {"kafka_sasl_password": WRONG["kafka"]}, "Invalid username or password", LOGIN),
        ("SCRAM-SHA-256", {"kafka_sasl_password": WRONG["kafka"]}, "invalid credentials", LOGIN),
        ("SCRAM-SHA-512", {"kafka_sasl_username": "nobody"}, "invalid credentials", LOGIN),
        (
            "PLAIN",
            {"kafka_ssl_ca_file": "another CA"},
            "self-signed certificate",
            "KAFKA_SSL_CA_FILE",
        ),
        (
            "SSL",
            {"kafka_ssl_cert_file": None, "kafka_ssl_key_file": None},
            "closed",
            "KAFKA_SSL_CERT_FILE",
        ),
    ],
)
def test_refused_logins_fail_clearly(
    secure: SecureBroker,
    pg: PostgresEndpoint,
    names: dict[str, str],
    mode: str,
    change: dict[str, object],
    broker_says: str,
    setting: str,
    tmp_path: Path,
) -> None:
    fields = {**kafka_fields(secure, mode), **change}
    if fields.get("kafka_ssl_ca_file") == "another CA":
        fields["kafka_ssl_ca_file"] = make_ca(tmp_path / "stranger", "another CA").cert
    if fields.get("kafka_ssl_cert_file") is None:
        fields.pop("kafka_ssl_key_password", None)
    settings = make_settings(pg, secure.plaintext, names, **fields)
    result = run_cli(settings, "create-topics", timeout=180)
    assert result.returncode == ExitCode.UNAVAILABLE
    error = last_line(result)
    assert broker_says in error, error  # the one error line carries the broker's reason
    assert error.startswith(f"error: Kafka at {fields['kafka_bootstrap_servers']}"), error
    assert setting in error, error
    assert WRONG["kafka"] not in result.stdout + result.stderr


# --- secrets ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPostgres]:
    with secured_postgres(tmp_path_factory.mktemp("pg-pki"), PG_PASSWORD) as pg:
        yield pg


class Transcript:
    """Everything the service printed or served, by what produced it."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []

    def add(self, label: str, text: str) -> str:
        self.parts.append((label, text))
        return text

    def cli(
        self, label: str, settings: Settings, *args: str, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = run_cli(settings, *args, timeout=180, **env)
        self.add(f"{label} stdout", result.stdout)
        self.add(f"{label} stderr", result.stderr)
        return result

    def leaks(self) -> list[str]:
        forms = {
            form for secret in SECRETS for form in (secret, quote(secret, safe=""), quote(secret))
        }
        return [
            f"{label}: contains {form!r}"
            for label, text in self.parts
            for form in forms
            if form in text
        ]


def test_no_secret_is_ever_printed(
    secure: SecureBroker, tls_pg: SecuredPostgres, names: dict[str, str], tmp_path: Path
) -> None:
    """A full TLS deployment (Kafka SASL_SSL/SCRAM, PostgreSQL verify-full) at DEBUG, its
    CLI, /health, /metrics and /docs, and every failure an operator meets."""
    seen = Transcript()
    settings = Settings(
        **tls_pg.settings("verify-full"),
        **kafka_fields(secure, "SCRAM-SHA-256"),
        kafka_topic=names["topic"],
        kafka_dlq_topic=names["dlq"],
        kafka_group_id=names["group"],
        kafka_topic_partitions=3,
        batch_timeout_ms=100,
        retry_initial_backoff_s=0.1,
        retry_max_backoff_s=1.0,
        log_level="DEBUG",
    )  # type: ignore[arg-type]
    for command in (["migrate"], ["create-topics"], ["publish", "--sample", "--run", "secrets"]):
        result = seen.cli(command[0], settings, *command)
        assert result.returncode == 0, result.stderr

    consumer, port = start_consumer(settings, tmp_path, "consumer-secrets")
    try:
        seen.add("/health", wait_for_http(port, "/health", 200, consumer))
        asyncio.run(wait_for_sample_over_tls(settings, secure, "secrets", consumer))
        for path in ("/metrics", "/docs"):
            status, body = http_get(port, path)
            assert status == 200
            seen.add(path, body)
        for command in (["lag"], ["dead-letters"], ["show"]):
            result = seen.cli(command[0], settings, *command)
            assert result.returncode == 0, result.stderr
        # The database refuses the service's role while it runs: /health says so.
        asyncio.run(set_login(tls_pg, allowed=False))
        body = seen.add("/health down", wait_for_http(port, "/health", 503, consumer))
        assert json.loads(body)["checks"]["database"]["ok"] is False
        asyncio.run(set_login(tls_pg, allowed=True))
        wait_for_http(port, "/health", 200, consumer)
        assert consumer.stop() == 0
    finally:
        consumer.kill()
        seen.add("consumer log", consumer.log_path.read_text(errors="replace"))
    assert "ready: the database check fails" in seen.parts[-1][1]

    failures = {
        "wrong Kafka password": (
            dict(kafka_sasl_password=WRONG["kafka"]),
            ["create-topics", "run", "lag"],
        ),
        "wrong PostgreSQL password": (
            dict(postgres_password=WRONG["postgres"]),
            ["migrate", "run", "lag", "show"],
        ),
        "PostgreSQL unreachable": (dict(postgres_port=free_port()), ["migrate", "run"]),
        "Kafka unreachable": (
            dict(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}"),
            ["create-topics", "publish"],
        ),
        "wrong client key password": (
            {
                **kafka_fields(secure, "SSL"),
                "kafka_ssl_key_password": WRONG["key"],
                "kafka_sasl_mechanism": None,
                "kafka_sasl_username": None,
                "kafka_sasl_password": None,
            },
            ["run", "create-topics"],
        ),
    }
    for label, (change, commands) in failures.items():
        broken = settings.model_copy(update=change)
        for command in commands:
            args = [command, "--sample"] if command == "publish" else [command]
            result = seen.cli(f"{label}: {command}", broken, *args)
            # A key that cannot be loaded is a setting to fix; the rest are refusals.
            code = ExitCode.USAGE if "key password" in label else ExitCode.UNAVAILABLE
            assert result.returncode == code, (label, command, result.stderr[-2000:])
            # At DEBUG, `run` also logs the traceback of its failed start.
            error = (
                result.stderr.strip().splitlines()[-1] if command == "run" else last_line(result)
            )
            assert error.startswith("error: "), (label, command, result.stderr)

    # Configuration errors, with every secret set in the environment.
    for label, env in {
        "SASL without a mechanism": {"KAFKA_SASL_MECHANISM": ""},
        "bad port": {"POSTGRES_PORT": "54x2"},
        "SASL settings on a plaintext protocol": {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
    }.items():
        result = seen.cli(label, settings, "run", **env)
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert last_line(result).startswith("error: ")

    assert seen.leaks() == []
    printed = "".join(text for _, text in seen.parts)
    assert len(seen.parts) > 40 and "caught up" in printed  # the transcript is real


async def set_login(pg: SecuredPostgres, allowed: bool) -> None:
    connection = await pg.superuser()
    try:
        await connection.execute(f"ALTER ROLE {pg.user} {'LOGIN' if allowed else 'NOLOGIN'}")
        if not allowed:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                pg.user,
            )
    finally:
        await connection.close()
