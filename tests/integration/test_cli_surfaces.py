"""The operator's commands on the real services: exit codes that tell work to do (1) from
a service that cannot be reached (3), `--json` documents, `show --limit`, and the dead
letters' key and event_id. Every failure is one `error:` line, with no asyncio debris."""

from __future__ import annotations

import json
import subprocess
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli.exit_codes import ExitCode
from service.config.settings import Settings
from service.core.domain import Reason
from service.core.letters import DeadLetter
from service.kafka.dead_letter_producer import KafkaDeadLetterSink
from service.kafka.topics import ensure_topics
from service.postgres import consumer_offsets
from service.postgres.engine import make_session_factory
from tests.support.brokers import free_port
from tests.support.cli import run_cli
from tests.support.kafka import read_topic
from tests.support.write_path import SimpleRecord

DEBRIS = ("Unclosed AIOKafka", "Future exception was never retrieved", "Traceback", "Task was")


def the_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line, last on stderr, with nothing asyncio leaves behind."""
    output = result.stdout + result.stderr
    assert not [word for word in DEBRIS if word in output], output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert errors[0] == result.stderr.strip().splitlines()[-1], output
    return errors[0]


def unreachable(settings: Settings) -> Settings:
    return settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})


async def test_lag_exits_1_with_records_to_apply_and_3_when_kafka_cannot_be_reached(
    settings: Settings,
) -> None:
    published = run_cli(settings, "publish", "--sample", "--run", uuid.uuid4().hex)
    assert published.returncode == 0, published.stderr
    count = int(published.stdout.split()[1])

    behind = run_cli(settings, "lag", "--json")
    assert behind.returncode == ExitCode.ATTENTION, behind.stderr
    document = json.loads(behind.stdout)
    assert document["not_yet_applied"] == count and document["caught_up"] is False
    assert sum(p["end_offset"] for p in document["partitions"]) == count
    assert document["topic"] == settings.kafka_topic

    text_form = run_cli(settings, "lag")
    assert text_form.returncode == ExitCode.ATTENTION
    assert text_form.stdout.strip().splitlines()[-1] == f"{count} records not yet applied"

    for command in (["lag"], ["positions"], ["dead-letters"], ["create-topics"]):
        result = run_cli(unreachable(settings), *command, timeout=90)
        assert result.returncode == ExitCode.UNAVAILABLE, (command, result.stderr)
        assert "KAFKA_BOOTSTRAP_SERVERS" in the_error_line(result), command
        # Nothing but the error line: no client library lines before it, none after.
        assert [line for line in result.stderr.splitlines() if line.strip()] == [
            the_error_line(result)
        ], command


async def test_positions_exit_1_when_a_partition_needs_a_decision(
    settings: Settings, engine: AsyncEngine
) -> None:
    await ensure_topics(settings)
    fine = run_cli(settings, "positions", "--json")
    assert fine.returncode == ExitCode.OK, fine.stderr
    rows = json.loads(fine.stdout)["partitions"]
    assert [row["partition"] for row in rows] == [0, 1, 2]
    assert not any(row["needs_decision"] for row in rows)

    # A stored position ahead of the log's end: the topic was created again, say.
    async with make_session_factory(engine)() as session, session.begin():
        await consumer_offsets.set_position(
            session, settings.kafka_group_id, settings.kafka_topic, 1, 999, None
        )
    held = run_cli(settings, "positions", "--json")
    assert held.returncode == ExitCode.ATTENTION, held.stderr
    (row,) = [row for row in json.loads(held.stdout)["partitions"] if row["needs_decision"]]
    assert (row["partition"], row["stored"], row["log_end"]) == (1, 999, 0)

    unknown = run_cli(settings, "positions", "reset", "--partition", "7", "--to", "log-end")
    assert unknown.returncode == ExitCode.USAGE
    assert the_error_line(unknown) == (
        f"error: {settings.kafka_topic} has no partition [7]; name one of [0, 1, 2]"
    )


async def test_show_prints_at_most_limit_rows_and_says_how_many_more(
    settings: Settings, engine: AsyncEngine
) -> None:
    base = 9_000_000 + uuid.uuid4().int % 1_000_000
    async with engine.begin() as connection:
        for offset in range(3):
            await connection.execute(
                text(
                    "INSERT INTO products (id, name, price, quantity, version) "
                    "VALUES (:id, 'limited', 1.50, 1, 1)"
                ),
                {"id": base + offset},
            )
        total = await connection.scalar(text("SELECT count(*) FROM products"))

    shown = run_cli(settings, "show", "--limit", "2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert lines[-2:] == ["(2 rows)", f"{total - 2} more rows not shown; raise --limit to see them"]
    assert len(lines) == 2 + 2 + 2  # header, rule, two rows, the two lines

    document = json.loads(run_cli(settings, "show", "--limit", "1", "--json").stdout)
    assert (len(document["products"]), document["total"], document["more"]) == (
        1,
        total,
        total - 1,
    )
    assert set(document["products"][0]) == {"id", "name", "price", "quantity", "version", "deleted"}


async def test_dead_letters_show_key_and_event_id(settings: Settings, kafka: str) -> None:
    await ensure_topics(settings)
    event_id = str(uuid.uuid4())
    value = json.dumps({"event_id": event_id, "event_type": "product.upserted"}).encode()
    topic = settings.kafka_topic
    sink = KafkaDeadLetterSink(settings, "t")
    await sink.start()
    try:
        await sink.send(
            [
                DeadLetter(
                    SimpleRecord(topic, 1, 4, b"42", value, ()), Reason.INVALID_EVENT, "bad"
                ),
                DeadLetter(SimpleRecord(topic, 2, 8, None, b"{no", ()), Reason.INVALID_JSON, "nj"),
            ]
        )
    finally:
        await sink.stop()
    await read_topic(kafka, settings.kafka_dlq_topic, 2)

    listed = run_cli(settings, "dead-letters")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.strip().splitlines()[:-1]) == [
        f"{topic}[1]@4 key=42 event_id={event_id} invalid_event: bad",
        f"{topic}[2]@8 key=- event_id=- invalid_json: nj",
    ]
    document = json.loads(run_cli(settings, "dead-letters", "--json").stdout)
    assert document["total"] == 2
    by_offset = {letter["original_offset"]: letter for letter in document["letters"]}
    assert (by_offset[4]["key"], by_offset[4]["event_id"]) == ("42", event_id)
    assert (by_offset[8]["key"], by_offset[8]["event_id"]) == (None, None)
    assert by_offset[4]["reason"] == "invalid_event"
    assert json.loads(run_cli(settings, "dead-letters", "--count", "--json").stdout) == {
        "topic": settings.kafka_dlq_topic,
        "total": 2,
    }
