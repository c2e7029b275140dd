"""The benchmark's write-only mode (bench/write_only.py) on the real broker and database: the
whole stream written by the service's write path, checked against the oracle."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import stream
from bench.modes import Topic
from bench.prefill import Prefill
from bench.target import Target
from bench.write_only import write_only
from service.config.settings import Settings
from testbed.oracle import expected_outcome
from testbed.publish import publish_bulk

PARTITIONS = 3


async def _topic(settings: Settings, names: dict[str, str], tmp_path: Path, size: int) -> Topic:
    pairs = stream.build(size, products=20, seed=3)
    await stream.create_topic(settings.kafka_bootstrap_servers, names["topic"], PARTITIONS)
    await publish_bulk(settings.kafka_bootstrap_servers, names["topic"], pairs, PARTITIONS)
    ends = await stream.end_offsets(settings.kafka_bootstrap_servers, names["topic"])
    target = Target(settings, "postgres")
    return Topic(
        target, "t", names["topic"], size, PARTITIONS, ends, tmp_path, expected_outcome(pairs)
    )


async def test_write_only_writes_the_whole_stream_as_the_oracle_expects(
    engine: AsyncEngine, settings: Settings, names: dict[str, str], tmp_path: Path
) -> None:
    topic = await _topic(settings, names, tmp_path, 600)
    try:
        result = await write_only(topic, batch_max_records=100, timeout=120)
    finally:
        await stream.delete_topics(settings.kafka_bootstrap_servers, [names["topic"]])

    assert result.events == 600
    assert topic.expected is not None
    assert any(note.startswith("verified: table matches the oracle") for note in result.notes)
    letters = f"dead letters: {topic.expected.dead_letters:,} (oracle: "
    assert any(note.startswith(letters) for note in result.notes), result.notes
    assert result.pg["wal_bytes"] > 0 and result.pg_events == 600
    async with engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT sum(next_offset) FROM consumer_offsets WHERE topic = :t"),
            {"t": names["topic"]},
        )
    assert stored == 600  # every record's position committed with its batch


async def test_write_only_is_verified_beside_a_prefill(
    engine: AsyncEngine, settings: Settings, names: dict[str, str], tmp_path: Path
) -> None:
    topic = await _topic(settings, names, tmp_path, 300)
    topic.prefill = Prefill(products=500, processed=400, stream_products=20)
    try:
        result = await write_only(topic, batch_max_records=100, timeout=120)
    finally:
        await stream.delete_topics(settings.kafka_bootstrap_servers, [names["topic"]])

    assert result.prefill == "500/400/0"
    verdict = next(note for note in result.notes if "oracle (" in note)
    assert verdict.startswith("verified: the stream's rows match the oracle"), verdict
    assert "beside 500 prefilled products and 400 of 400 prefilled ids" in verdict
