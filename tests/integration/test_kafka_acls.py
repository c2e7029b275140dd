"""The Kafka ACLs docs/how-to/tls-sasl.md lists are exactly what each command needs.

A throwaway broker authorizes every request (StandardAuthorizer,
allow.everyone.if.no.acl.found=false). Each command logs in over SASL_SSL as a user holding
the page's ACLs for it: it works. For each of those ACLs, a user holding all the others runs
it again: it fails, and its last line names the missing one (the consumer, whose start-up
failure path prints the exception, names it in its log).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from service.cli.exit_codes import ExitCode
from service.cli.sample import sample_events
from service.config.settings import Settings
from service.kafka.refusal import KafkaAccessDenied
from testbed.oracle import diff, expected_outcome, table
from tests.conftest import ROOT, make_settings
from tests.support.cli import run_cli
from tests.support.consumer import ConsumerProcess
from tests.support.secure_kafka import Acl, SecureBroker, add_acls, secure_broker
from tests.support.services import PostgresEndpoint

SUFFIX = uuid.uuid4().hex[:8]
TOPIC, DLQ, GROUP = f"acl.events.{SUFFIX}", f"acl.events.{SUFFIX}.dlq", f"acl-sink-{SUFFIX}"
SETTING = {TOPIC: "KAFKA_TOPIC", DLQ: "KAFKA_DLQ_TOPIC", GROUP: "KAFKA_GROUP_ID"}

# The table of docs/how-to/tls-sasl.md (Kafka ACLs), command by command.
ACLS: dict[str, list[Acl]] = {
    "run": [Acl("topic", TOPIC, "Read"), Acl("group", GROUP, "Read"), Acl("topic", DLQ, "Write")],
    "create-topics": [Acl("topic", TOPIC, "Create"), Acl("topic", DLQ, "Create")],
    "publish": [Acl("topic", TOPIC, "Write"), Acl("topic", DLQ, "Describe")],
    "lag": [Acl("topic", TOPIC, "Describe")],
    "dead-letters": [Acl("topic", DLQ, "Read")],
    "dead-letters replay": [Acl("topic", DLQ, "Read"), Acl("topic", TOPIC, "Write")],
    "positions": [Acl("topic", TOPIC, "Describe")],
    "positions reset": [Acl("topic", TOPIC, "Describe"), Acl("group", GROUP, "Describe")],
}
ARGS = {
    "run": ["run"],
    "create-topics": ["create-topics"],
    "publish": ["publish", "--sample", "--run", SUFFIX],
    "lag": ["lag"],
    "dead-letters": ["dead-letters"],
    "dead-letters replay": ["dead-letters", "replay", "--all"],
    "positions": ["positions"],
    "positions reset": ["positions", "reset", "--all", "--to", "log-end"],
}


def _user(command: str, without: int | None = None) -> str:
    name = command.replace(" ", "-")
    return name if without is None else f"{name}-without-{without}"


USERS: dict[str, list[Acl]] = {}
for _command, _acls in ACLS.items():
    USERS[_user(_command)] = _acls
    for _index in range(len(_acls)):
        USERS[_user(_command, _index)] = _acls[:_index] + _acls[_index + 1 :]
PASSWORDS = {user: f"pw-{user}" for user in USERS}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    directory = tmp_path_factory.mktemp("kafka-acls")
    with secure_broker(directory, PASSWORDS, {}, authorizer=True) as secured:
        add_acls(secured.plaintext, USERS)
        yield secured


def _settings(broker: SecureBroker, pg: PostgresEndpoint, user: str) -> Settings:
    names = {"topic": TOPIC, "dlq": DLQ, "group": GROUP}
    return make_settings(
        pg, broker.plaintext, names, **broker.settings("PLAIN", user, PASSWORDS[user])
    )


def _missing_line(acl: Acl) -> str:
    return "error: " + str(KafkaAccessDenied(acl.operation, acl.resource, acl.name))


def _check_cli(broker: SecureBroker, pg: PostgresEndpoint, command: str) -> str:
    """Each ACL left out fails the command naming it; all of them run it. Its stdout."""
    for index, acl in enumerate(ACLS[command]):
        result = run_cli(_settings(broker, pg, _user(command, index)), *ARGS[command])
        lines = result.stderr.strip().splitlines()
        assert result.returncode == ExitCode.UNAVAILABLE, (
            f"{command} without {acl}: {result.stdout}"
        )
        assert lines and lines[-1] == _missing_line(acl), (
            f"{command} without {acl}:\n{result.stderr}"
        )
    result = run_cli(_settings(broker, pg, _user(command)), *ARGS[command])
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _consumer(
    broker: SecureBroker, pg: PostgresEndpoint, user: str, tmp_path: Path
) -> ConsumerProcess:
    return ConsumerProcess(_settings(broker, pg, user), tmp_path, user)


def test_each_command_needs_exactly_its_acls(
    broker: SecureBroker, pg: PostgresEndpoint, tmp_path: Path
) -> None:
    asyncio.run(_empty_tables(pg))
    assert "topics ready" in _check_cli(broker, pg, "create-topics")
    assert "published 13 records" in _check_cli(broker, pg, "publish")

    for index, acl in enumerate(ACLS["run"]):
        refused = _consumer(broker, pg, _user("run", index), tmp_path)
        refused.start()
        try:
            named = str(KafkaAccessDenied(acl.operation, acl.resource, acl.name))
            if acl.resource == "group":  # aiokafka's own error, from the consumer's start
                named = f"GroupAuthorizationFailedError: {acl.name}); allow its user"
            # A start that cannot complete ends the process, its last line naming the ACL.
            assert refused.process is not None
            code = refused.process.wait(90)
            last = refused.tail(400).splitlines()[-1]
            assert code == ExitCode.UNAVAILABLE, (
                f"run without {acl} exited {code}:\n{refused.tail()}"
            )
            assert last.startswith("error: ") and named in last, f"run without {acl}: {last}"
        finally:
            refused.kill()

    consumer = _consumer(broker, pg, _user("run"), tmp_path)
    consumer.start()
    try:
        asyncio.run(_wait_for_sample(pg, consumer))
    finally:
        assert consumer.stop() == 0, consumer.tail()

    assert "caught up" in _check_cli(broker, pg, "lag")
    assert "(4 dead letters in" in _check_cli(broker, pg, "dead-letters")
    assert "replayed 4 of 4 dead letters" in _check_cli(broker, pg, "dead-letters replay")
    assert "partition" in _check_cli(broker, pg, "positions")
    _check_cli(broker, pg, "positions reset")


async def _empty_tables(pg: PostgresEndpoint) -> None:
    connection = await pg.connect()
    try:
        await connection.execute("TRUNCATE products, processed_events, consumer_offsets")
    finally:
        await connection.close()


async def _wait_for_sample(pg: PostgresEndpoint, consumer: ConsumerProcess) -> None:
    """The sample's rows are in the table and this consumer dead-lettered its 4 bad records."""
    expected = expected_outcome(sample_events(SUFFIX)).products
    problems = ["not read yet"]
    engine = create_async_engine(pg.url())
    try:
        deadline = time.monotonic() + 90
        while consumer.alive() and time.monotonic() < deadline:
            problems = diff(expected, await table(engine))
            if not problems and consumer.letters_logged() == 4:
                return
            await asyncio.sleep(0.3)
    finally:
        await engine.dispose()
    pytest.fail("\n".join(problems) + "\n" + consumer.tail())


def test_the_docs_list_these_acls() -> None:
    page = (ROOT / "docs" / "how-to" / "tls-sasl.md").read_text()
    for command, acls in ACLS.items():
        cells = ", ".join(
            f"{acl.operation} on {acl.resource} `{SETTING[acl.name]}`" for acl in acls
        )
        row = f"| `{command}` | {cells} |"
        assert row in page, f"docs/how-to/tls-sasl.md lacks the row {row}"
    assert re.search(r"\| `show`, `migrate`, `contract` \| none \|", page)
