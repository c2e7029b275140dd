"""`dead-letters replay` on the real broker and database, with the real consumer process."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli.replay import ReplayError, replay
from service.cli.replay_selection import Selection
from service.cli.status import partition_lag, print_dead_letters
from service.config.settings import Settings
from service.core.domain import Reason
from service.core.letters import DeadLetter
from service.kafka import clients
from service.kafka.dead_letter_producer import KafkaDeadLetterSink
from service.kafka.topics import ensure_topics, partitions_of
from testbed.events import adjust, record, upsert
from testbed.oracle import table
from testbed.publish import partition_of, publish
from tests.support.cli import run_cli
from tests.support.consumer import ConsumerProcess
from tests.support.kafka import header_map, read_topic
from tests.support.write_path import SimpleRecord


async def end_offsets(settings: Settings, topic: str) -> int:
    """How many records `topic` has (all partitions)."""
    partitions = await partitions_of(settings, topic)
    assert partitions, f"no topic {topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_brokers)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    what: str,
    consumer: ConsumerProcess,
    timeout: float = 90.0,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        if not consumer.alive():
            break
        await asyncio.sleep(0.3)
    pytest.fail(f"never saw {what}\n--- consumer log:\n{consumer.tail()}")


@pytest.fixture
def consumer(settings: Settings, tmp_path: Path) -> Iterator[ConsumerProcess]:
    process = ConsumerProcess(settings, tmp_path)
    yield process
    process.kill()


async def test_a_rejected_adjustment_replayed_after_its_fix_applies_exactly_once(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    await ensure_topics(settings)
    consumer.start()
    early = adjust(42, 5)
    await publish(kafka, settings.kafka_topic, [record(early)])
    (letter,) = await read_topic(kafka, settings.kafka_dlq_topic, 1, timeout=90)
    assert header_map(letter)["error.reason"] == "unknown_product"

    await publish(kafka, settings.kafka_topic, [record(upsert(42, 1, quantity=10))])

    async def quantity(expected: int) -> bool:
        row = (await table(engine)).get(42)
        return row is not None and row.quantity == expected

    await wait_until(lambda: quantity(10), "product 42 at quantity 10", consumer)

    first = run_cli(settings, "dead-letters", "replay", "--reason", "unknown_product")
    assert first.returncode == 0, first.stderr
    assert "replayed 1 of 1 dead letters" in first.stdout
    assert "replayed 1/1" in first.stderr  # progress
    await wait_until(lambda: quantity(15), "the replayed adjustment applied", consumer)
    async with engine.connect() as connection:
        claimed = await connection.scalar(
            text("SELECT count(*) FROM processed_events WHERE event_id = :id"),
            {"id": UUID(early["event_id"])},
        )
    assert claimed == 1

    second = run_cli(settings, "dead-letters", "replay", "--reason", "unknown_product")
    assert second.returncode == 0, second.stderr
    assert "replayed 1 of 1 dead letters" in second.stdout

    async def caught_up() -> bool:
        lag = await partition_lag(settings)
        return sum(end for _, end in lag.values()) == 4 and sum(m for m, _ in lag.values()) == 0

    await wait_until(caught_up, "all 4 records (2 replays) consumed", consumer)
    assert (await table(engine))[42].quantity == 15  # the second replay was a duplicate
    letters = await read_topic(kafka, settings.kafka_dlq_topic, 2, timeout=3, settle=1)
    assert len(letters) == 1  # neither replay was dead-lettered again
    replayed = [
        r
        for r in await read_topic(kafka, settings.kafka_topic, 4)
        if "replayed.from" in header_map(r)
    ]
    source = f"{settings.kafka_dlq_topic}/{letter.partition}/{letter.offset}"
    assert [header_map(r)["replayed.from"] for r in replayed] == [source, source]
    assert {(r.key, r.value) for r in replayed} == {record(early)}


async def _dead_letter(settings: Settings, records: list[tuple[SimpleRecord, Reason]]) -> None:
    """Write letters exactly as the consumer does, with the real sink."""
    sink = KafkaDeadLetterSink(settings, "t")
    await sink.start()
    try:
        await sink.send([DeadLetter(r, reason, f"because {reason}") for r, reason in records])
    finally:
        await sink.stop()


async def test_selections_dry_run_and_headers_on_the_real_broker(
    settings: Settings, kafka: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await ensure_topics(settings)
    topic = settings.kafka_topic
    headers = (("trace", b"\xff\x00\xfe"), ("tenant", b"acme"), ("trace", b"again"))
    forged = (("error.reason", b"forged"), ("original.offset", b"1"))
    originals = [
        (SimpleRecord(topic, 1, 5, b"7", b'{"n": 5}', headers + forged), Reason.UNKNOWN_PRODUCT),
        (SimpleRecord(topic, 1, 6, b"7", b"{not json", ()), Reason.INVALID_JSON),
        (SimpleRecord(topic, 1, 7, b"7", b'{"n": 7}', headers), Reason.UNKNOWN_PRODUCT),
    ]
    await _dead_letter(settings, originals)
    (dlq_partition,) = {r.partition for r in await read_topic(kafka, settings.kafka_dlq_topic, 3)}

    dry = await replay(settings, Selection(reasons=frozenset({"unknown_product"})), dry_run=True)
    listed = capsys.readouterr().out
    assert (dry.selected, dry.published) == (2, 0)
    assert f"from {topic}[1]@5 unknown_product: because unknown_product" in listed
    assert f"from {topic}[1]@7 unknown_product" in listed
    assert "would replay 2 of 3 dead letters" in listed
    assert await end_offsets(settings, topic) == 0  # a dry run publishes nothing

    future = Selection(since=datetime.now(UTC) + timedelta(hours=1))
    assert (await replay(settings, future)).selected == 0
    assert await end_offsets(settings, topic) == 0

    ranged = Selection(reasons=frozenset({"unknown_product"}), partition=1, from_offset=6)
    assert (await replay(settings, ranged)).published == 1  # only original offset 7
    by_dlq = Selection(offsets_of="dlq", partition=dlq_partition, to_offset=0)
    assert (await replay(settings, by_dlq)).published == 1  # only the first letter
    assert await end_offsets(settings, topic) == 2

    by_value = {r.value: r for r in await read_topic(kafka, topic, 2)}
    first, seventh = by_value[b'{"n": 5}'], by_value[b'{"n": 7}']
    assert (seventh.key, seventh.value) == (b"7", b'{"n": 7}')
    assert list(seventh.headers) == [
        *headers,
        ("replayed.from", f"{settings.kafka_dlq_topic}/{dlq_partition}/2".encode()),
    ]
    # The original headers come back exactly, even those named like the sink's own.
    assert (first.key, first.value) == (b"7", b'{"n": 5}')
    assert list(first.headers) == [
        *headers,
        *forged,
        ("replayed.from", f"{settings.kafka_dlq_topic}/{dlq_partition}/0".encode()),
    ]


async def test_dead_letters_lists_each_letter_by_the_sinks_own_headers(
    settings: Settings, kafka: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dead-letters` reads letters as the replay does (Letter.of): an original header named
    like the sink's own is not taken for it."""
    await ensure_topics(settings)
    topic = settings.kafka_topic
    forged = (("error.reason", b"forged"), ("original.offset", b"1"))
    await _dead_letter(
        settings,
        [
            (SimpleRecord(topic, 2, 5, b"7", b"{}", forged), Reason.UNKNOWN_PRODUCT),
            (SimpleRecord(topic, 0, 9, b"8", b"{not json", ()), Reason.INVALID_JSON),
        ],
    )
    await read_topic(kafka, settings.kafka_dlq_topic, 2)
    await print_dead_letters(settings, count_only=False, last=5)
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines[:-1]) == [
        f"{topic}[0]@9 key=8 event_id=- invalid_json: because invalid_json",
        f"{topic}[2]@5 key=7 event_id=- unknown_product: because unknown_product",
    ]
    assert lines[-1] == f"(2 dead letters in {settings.kafka_dlq_topic})"


def test_the_command_refuses_to_run_without_a_selection(settings: Settings) -> None:
    result = run_cli(settings, "dead-letters", "replay", "--dry-run")
    assert result.returncode == 2
    assert "choose which dead letters to replay" in result.stderr
    assert "--all" in result.stderr


async def test_a_missing_dlq_topic_is_named_with_the_fix(settings: Settings) -> None:
    with pytest.raises(ReplayError, match=r"no dead-letter topic .*KAFKA_DLQ_TOPIC"):
        await replay(settings, Selection(everything=True))


async def test_a_cut_letter_is_never_replayed(
    settings: Settings, kafka: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its value is not the original record's (service/core/letter_fit.py): it is named, not
    published."""
    await ensure_topics(settings)
    topic = settings.kafka_topic
    await _dead_letter(
        settings,
        [
            (SimpleRecord(topic, 0, 3, b"3", bytes(6_000_000), ()), Reason.RECORD_TOO_LARGE),
            (SimpleRecord(topic, 0, 4, b"4", b'{"n": 4}', ()), Reason.UNKNOWN_PRODUCT),
        ],
    )
    dry = await replay(settings, Selection(everything=True), dry_run=True)
    listed = capsys.readouterr().out
    assert (dry.read, dry.selected) == (2, 1)
    assert f"not replayable: {settings.kafka_dlq_topic}[" in listed
    assert f"from {topic}[0]@3 record_too_large (cut: value): " in listed
    assert "publish the original again from its source" in listed
    assert (await replay(settings, Selection(everything=True))).published == 1
    (replayed,) = await read_topic(kafka, topic, 1)
    assert (replayed.key, replayed.value) == (b"4", b'{"n": 4}')


async def _set_max_message_bytes(settings: Settings, topic: str, limit: int) -> None:
    """The topic's record size limit, as an operator changes it (kafka-configs --alter)."""
    admin = clients.admin(settings)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)})]
        )
    finally:
        await admin.close()


def _products_per_dlq_partition(partitions: int, per_partition: int) -> list[int]:
    """Product ids whose letters land on each DLQ partition (the sink keys letters by the
    record's key), `per_partition` of each."""
    chosen: dict[int, list[int]] = {p: [] for p in range(partitions)}
    product = 0
    while any(len(ids) < per_partition for ids in chosen.values()):
        product += 1
        ids = chosen[partition_of(str(product).encode(), partitions)]
        if len(ids) < per_partition:
            ids.append(product)
    return sorted(p for ids in chosen.values() for p in ids)


def _resume_argv(error_line: str) -> list[str]:
    """The options of the command a refused replay says resumes all of it."""
    _, command = error_line.split("resume all of them with: ", 1)
    argv = shlex.split(command.split(" (", 1)[0])
    assert argv[:3] == ["inventory-sink", "dead-letters", "replay"], command
    return argv[1:]


OVERSIZED = 30_000  # bytes of padding: above the input topic's limit while it is lowered


async def test_a_refused_publish_resumes_every_dlq_partition_and_applies_each_letter_once(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    """The broker refuses part of a replay (here a record above the input topic's
    max.message.bytes; an ACL or a deleted topic refuse the same way). The error names where
    each DLQ partition's unconfirmed letters begin and the one command that resumes them all;
    once the cause is fixed, that command replays every letter, each applied exactly once."""
    await ensure_topics(settings)
    dlq, topic = settings.kafka_dlq_topic, settings.kafka_topic
    assert len(await partitions_of(settings, dlq)) == 3
    products = _products_per_dlq_partition(3, 3)
    consumer.start()
    await publish(kafka, topic, [record(upsert(p, 1, quantity=0)) for p in products])

    async def stock(expected: int) -> bool:
        rows = await table(engine)
        return all(p in rows and rows[p].quantity == expected for p in products)

    await wait_until(lambda: stock(0), "every product at quantity 0", consumer)
    # Each product's first rejected adjustment is too large for the input topic (for now);
    # PUBLISH_CHUNK (500) < the letters, so the refusal comes before all are read.
    adjustments = 150
    letters: list[tuple[SimpleRecord, Reason]] = []
    for product in products:
        for index in range(adjustments):
            key, value = record(adjust(product, 1))
            if index == 0:
                value += b" " * OVERSIZED  # still the same JSON event
            original = SimpleRecord(topic, 0, len(letters), key, value, ())
            letters.append((original, Reason.UNKNOWN_PRODUCT))
    await _dead_letter(settings, letters)
    in_dlq = await read_topic(kafka, dlq, len(letters), timeout=60, settle=0.5)
    assert len(in_dlq) == len(letters)
    assert {r.partition for r in in_dlq} == {0, 1, 2}
    await _set_max_message_bytes(settings, topic, 20_000)

    refused = run_cli(settings, "dead-letters", "replay", "--reason", "unknown_product")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    error_line = refused.stderr.splitlines()[-1]
    print(error_line)  # shown when the test fails
    assert error_line.startswith("error: publishing to "), refused.stderr
    assert "max.message.bytes" in error_line  # the setting to fix
    argv = _resume_argv(error_line)
    resumed_partitions = [
        int(argv[i + 1].split(":")[0]) for i, a in enumerate(argv) if a == "--resume"
    ]
    assert resumed_partitions == sorted(resumed_partitions)  # in partition order, every run
    assert argv[2:4] == ["--reason", "unknown_product"]  # the selection of the refused run

    await _set_max_message_bytes(settings, topic, 1024 * 1024)  # the fix
    resumed = run_cli(settings, *argv)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "replayed " in resumed.stdout

    dlq_size = len(letters)
    replays = await read_topic(kafka, topic, len(products) + dlq_size, timeout=90, settle=1)

    async def caught_up() -> bool:
        lag = await partition_lag(settings)
        return sum(m for m, _ in lag.values()) == 0

    await wait_until(caught_up, "every replayed record consumed", consumer)
    rows = await table(engine)
    # Each letter applied exactly once: a missed letter leaves less, a double one more.
    assert {p: rows[p].quantity for p in products} == {p: adjustments for p in products}
    sources = {header_map(r).get("replayed.from") for r in replays} - {None}
    assert sources == {f"{dlq}/{r.partition}/{r.offset}" for r in in_dlq}
    again = await read_topic(kafka, dlq, dlq_size + 1, timeout=3, settle=1)
    assert len(again) == dlq_size  # none was dead-lettered again


async def test_a_failed_replay_ends_in_its_one_error_line(settings: Settings, kafka: str) -> None:
    """Nothing follows the `error:` line: every client is closed and every send's outcome
    awaited before the command ends (no "Unclosed AIOKafka..." or "Future exception was never
    retrieved" from the garbage collector)."""
    await ensure_topics(settings)
    dlq, topic = settings.kafka_dlq_topic, settings.kafka_topic
    # More than one chunk of sends, on several partitions, the first of each key too large.
    letters = [
        (
            SimpleRecord(topic, 0, i, b"%d" % (i % 6), b"{}" + b" " * (OVERSIZED * (i < 6)), ()),
            Reason.UNKNOWN_PRODUCT,
        )
        for i in range(600)
    ]
    await _dead_letter(settings, letters)
    assert len(await read_topic(kafka, dlq, len(letters), settle=0.5)) == len(letters)
    await _set_max_message_bytes(settings, topic, 20_000)

    result = run_cli(settings, "dead-letters", "replay", "--all")
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert [i for i, line in enumerate(lines) if line.startswith("error:")] == [len(lines) - 1], (
        result.stderr
    )
    assert "Unclosed" not in result.stderr
    assert "never retrieved" not in result.stderr


async def test_offsets_select_only_letters_of_the_input_topic(
    settings: Settings, kafka: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Offsets are positions on KAFKA_TOPIC: a letter from a former input topic with the same
    partition and offset is another record, and a replay would publish it into this topic."""
    await ensure_topics(settings)
    dlq, topic = settings.kafka_dlq_topic, settings.kafka_topic
    former = f"{topic}.former"
    await _dead_letter(
        settings,
        [
            (SimpleRecord(former, 1, 5, b"7", b'{"from": "former"}', ()), Reason.UNKNOWN_PRODUCT),
            (SimpleRecord(topic, 1, 5, b"7", b'{"from": "current"}', ()), Reason.UNKNOWN_PRODUCT),
        ],
    )
    in_dlq = {r.value: r for r in await read_topic(kafka, dlq, 2)}

    by_original = Selection(partition=1, from_offset=5, to_offset=5)
    dry = await replay(settings, by_original, dry_run=True)
    listed = capsys.readouterr().out
    assert (dry.read, dry.selected) == (2, 1)
    assert f"from {topic}[1]@5 " in listed
    assert f"from {former}[1]@5 " not in listed
    assert f"skipped 1 dead letter dead-lettered from another input topic ({former}: 1)" in listed

    assert (await replay(settings, by_original)).published == 1
    assert "skipped 1 dead letter" in capsys.readouterr().out
    letter = in_dlq[b'{"from": "former"}']
    by_dlq = Selection(
        offsets_of="dlq",
        partition=letter.partition,
        from_offset=letter.offset,
        to_offset=letter.offset,
    )
    assert (await replay(settings, by_dlq)).published == 0
    assert f"({former}: 1)" in capsys.readouterr().out
    replayed = await read_topic(kafka, topic, 1, settle=1)
    assert [r.value for r in replayed] == [b'{"from": "current"}']
