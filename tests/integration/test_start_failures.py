"""A `run` that cannot start ends the process with one `error:` line naming the setting to
fix, exit code 3 (a service refused or cannot be reached) and no traceback: Kafka refusing
the client (a throwaway TLS/SASL broker), and a subscriber whose own start fails after the
start-up checks passed."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli.exit_codes import ExitCode
from service.config.settings import Settings
from service.kafka.topics import partitions_of
from testbed.environment import settings_env
from tests.conftest import make_settings
from tests.support.brokers import free_port
from tests.support.certs import make_ca
from tests.support.cli import run_cli
from tests.support.consumer import ROOT
from tests.support.processes import serving
from tests.support.secure_kafka import SecureBroker, secure_broker
from tests.support.services import PostgresEndpoint

USER, PASSWORD = "sink-start", "Ks-start-P4q9/x@"
# A start that fails ends well within this (the refusals below take about 2 s).
EXIT_BOUND_S = 30.0


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with secure_broker(
        tmp_path_factory.mktemp("kafka-pki"), plain_users={USER: PASSWORD}, scram_users={}
    ) as broker:
        yield broker


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of the output that reports the error (asserting it is the only one)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    # Log lines of the logger `uvicorn.error` carry "error:" too: the error line starts with it.
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert lines[0] == result.stderr.strip().splitlines()[-1], output  # and the last one
    assert lines[0].startswith("error: "), output
    return lines[0]


def refusal_cases(secure: SecureBroker, tmp_path: Path) -> dict[str, tuple[dict[str, object], str]]:
    """Settings that Kafka refuses, and the setting the error must name."""
    sasl = secure.settings("PLAIN", USER, PASSWORD)
    no_tls = {
        "kafka_security_protocol": "PLAINTEXT",
        "kafka_sasl_mechanism": None,
        "kafka_sasl_username": None,
        "kafka_sasl_password": None,
        "kafka_ssl_ca_file": None,
    }
    return {
        "wrong SASL password": (
            {**sasl, "kafka_sasl_password": "Kw-wrong-Y5t1/x@"},
            "KAFKA_SASL_PASSWORD",
        ),
        "a mechanism the user has no credentials for": (
            {**sasl, "kafka_sasl_mechanism": "SCRAM-SHA-512"},
            "KAFKA_SASL_MECHANISM",
        ),
        "PLAINTEXT against a TLS listener": ({**sasl, **no_tls}, "KAFKA_SECURITY_PROTOCOL"),
        "TLS against a plaintext listener": (
            {**sasl, "kafka_bootstrap_servers": secure.plaintext},
            "KAFKA_SECURITY_PROTOCOL",
        ),
        "an unknown CA": (
            {**sasl, "kafka_ssl_ca_file": make_ca(tmp_path / "stranger", "another CA").cert},
            "KAFKA_SSL_CA_FILE",
        ),
    }


def test_kafka_refusing_the_consumer_ends_run_in_one_line(
    secure: SecureBroker, pg: PostgresEndpoint, names: dict[str, str], tmp_path: Path
) -> None:
    for label, (fields, setting) in refusal_cases(secure, tmp_path).items():
        settings = make_settings(pg, secure.plaintext, names, **fields)
        started = time.monotonic()
        result = run_cli(settings, "run", timeout=EXIT_BOUND_S + 30)
        took = time.monotonic() - started
        assert result.returncode == ExitCode.UNAVAILABLE, (label, result.stderr[-3000:])
        assert took < EXIT_BOUND_S, (label, took)
        line = error_line(result)
        assert setting in line, (label, line)
        assert "Kw-wrong" not in result.stdout + result.stderr
        # One way to explain it: create-topics says the same.
        created = run_cli(settings, "create-topics", timeout=60)
        assert (created.returncode, error_line(created)) == (ExitCode.UNAVAILABLE, line), label
    # PLAINTEXT against TLS is named as such, not only as a closed connection.
    fields, _ = refusal_cases(secure, tmp_path)["PLAINTEXT against a TLS listener"]
    result = run_cli(make_settings(pg, secure.plaintext, names, **fields), "run", timeout=60)
    assert "is a TLS listener, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in error_line(result)


def test_a_certificate_that_does_not_name_the_address_is_named_as_such(
    pg: PostgresEndpoint, names: dict[str, str], tmp_path: Path
) -> None:
    """127.0.0.1 against a certificate naming only localhost (a TLS server made with openssl
    stands in for the broker: the handshake fails before any Kafka request; -www keeps it
    accepting, as it does not read stdin)."""
    ca = make_ca(tmp_path / "pki")
    server = ca.issue("server", "localhost", server=True, hosts=("localhost",))
    port = free_port()
    command = [
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}",
        "-cert", str(server.cert), "-key", str(server.key), "-www",
    ]  # fmt: skip
    with serving(command, tmp_path / "s_server.log", b"ACCEPT", "TLS server", timeout=30):
        fields = {
            "kafka_bootstrap_servers": f"127.0.0.1:{port}",
            "kafka_security_protocol": "SSL",
            "kafka_ssl_ca_file": ca.cert,
        }
        result = run_cli(make_settings(pg, f"127.0.0.1:{port}", names, **fields), "run")
    assert result.returncode == ExitCode.UNAVAILABLE, result.stderr[-3000:]
    line = error_line(result)
    assert "certificate is not valid for '127.0.0.1'" in line, line
    assert "KAFKA_BOOTSTRAP_SERVERS names a host the certificate carries" in line, line


def test_the_traceback_of_a_refused_start_is_logged_at_debug_only(
    secure: SecureBroker, pg: PostgresEndpoint, names: dict[str, str], tmp_path: Path
) -> None:
    fields, _ = refusal_cases(secure, tmp_path)["wrong SASL password"]
    settings = make_settings(pg, secure.plaintext, names, log_level="DEBUG", **fields)
    result = run_cli(settings, "run", timeout=60)
    assert result.returncode == ExitCode.UNAVAILABLE
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: Kafka at ")


def test_with_log_format_json_a_failed_start_is_a_json_record_with_a_hint_for_the_image(
    pg: PostgresEndpoint, names: dict[str, str], tmp_path: Path
) -> None:
    """Every line a failed start prints is a JSON log record, the last one the error with its
    exit code; its hint names the setting, and no file of the checkout (.env.example)."""
    import json

    nobody = f"127.0.0.1:{free_port()}"
    settings = make_settings(pg, nobody, names, log_format="json")
    for command in ("run", "create-topics", "lag"):
        result = run_cli(settings, command, timeout=60)
        assert result.returncode == ExitCode.UNAVAILABLE, result.stderr[-3000:]
        records = [json.loads(line) for line in result.stderr.strip().splitlines()]
        last = records[-1]
        assert (last["level"], last["exit_code"]) == ("ERROR", ExitCode.UNAVAILABLE), last
        assert f"cannot connect to Kafka at {nobody}" in last["message"], last
        assert "KAFKA_BOOTSTRAP_SERVERS" in last["message"], last
        assert ".env.example" not in result.stderr
    # A malformed setting too (nothing is contacted).
    result = run_cli(settings, "show", postgres_port="five", log_format="json")
    (record,) = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert record["message"].startswith("POSTGRES_PORT='five' is invalid: "), record


# The subscriber's own start, after the checks (schema, topics, dead-letter producer) have
# passed and uvicorn serves HTTP, is refused as a broker without the group's ACL refuses it.
REFUSED_SUBSCRIBER = """
import sys
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import GroupAuthorizationFailedError

async def refused(self):
    raise GroupAuthorizationFailedError("Not authorized to access group")

AIOKafkaConsumer.start = refused  # only the subscriber uses a consumer in `run`
from service.cli.main import main
sys.exit(main(["run"]))
"""


def run_with_refused_subscriber(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REFUSED_SUBSCRIBER],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND_S + 30,
    )


async def test_a_subscriber_whose_start_fails_after_the_checks_ends_the_process(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str]
) -> None:
    settings = make_settings(pg, kafka, names)
    started = time.monotonic()
    result = run_with_refused_subscriber(settings)
    took = time.monotonic() - started
    assert result.returncode == ExitCode.UNAVAILABLE, result.stderr[-3000:]
    assert took < EXIT_BOUND_S, took
    # The checks had passed: the topics exist and uvicorn was serving.
    assert await partitions_of(settings, settings.kafka_topic) == [0, 1, 2]
    assert "Uvicorn running on" in result.stderr
    line = error_line(result)
    assert "KAFKA_GROUP_ID" in line and "GroupAuthorizationFailedError" in line, line


# A subscriber whose start never ends (a group that never assigns, say).
HANGING_SUBSCRIBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def hangs(self):
    await asyncio.Event().wait()

AIOKafkaConsumer.start = hangs
from service.cli.main import main
sys.exit(main(["run"]))
"""


def http_status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_start_that_hangs_fails_liveness_after_start_timeout_s(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(make_settings(pg, kafka, names, start_timeout_s=4.0))
    env.update(HTTP_PORT=str(port), HTTP_HOST="127.0.0.1")
    log = tmp_path / "hanging.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", HANGING_SUBSCRIBER], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while b"Uvicorn running on" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        for path in ("/health/started", "/health/ready"):
            status, body = http_status(port, path)
            assert status == 503 and "the consumer has not started yet" in body, (path, body)
        while (seen := http_status(port, "/health/live"))[0] == 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        status, body = seen
        assert status == 503 and "START_TIMEOUT_S=4s" in body, body
    finally:
        process.kill()
        process.wait(30)
