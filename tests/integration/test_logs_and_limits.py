"""LOG_FORMAT=json and MAX_RECORD_BYTES on the real service (issue 8, item 7)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.topics import ensure_topics
from testbed.events import record, upsert
from testbed.publish import publish
from tests.conftest import make_settings
from tests.support.cli import run_cli
from tests.support.consumer import ConsumerProcess
from tests.support.kafka import header_map, read_topic
from tests.support.services import PostgresEndpoint

LIMIT = 4096


@pytest.fixture
def json_settings(pg: PostgresEndpoint, kafka: str, names: dict[str, str]) -> Settings:
    return make_settings(
        pg, kafka, names, log_format="json", max_record_bytes=LIMIT, kafka_topic_partitions=1
    )


@pytest.fixture
def consumer(json_settings: Settings, tmp_path: Path) -> Iterator[ConsumerProcess]:
    process = ConsumerProcess(json_settings, tmp_path)
    yield process
    process.kill()


async def _products(engine: AsyncEngine, consumer: ConsumerProcess, want: set[int]) -> set[int]:
    deadline = time.monotonic() + 60
    found: set[int] = set()
    while time.monotonic() < deadline and consumer.alive():
        async with engine.connect() as connection:
            found = set((await connection.execute(text("SELECT id FROM products"))).scalars())
        if found == want:
            break
        await asyncio.sleep(0.3)
    return found


async def test_json_logs_and_an_oversized_record(
    json_settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    await ensure_topics(json_settings)
    good = record(upsert(1, 1))
    big = upsert(2, 1, name="big")
    big["data"]["description"] = "x" * (2 * LIMIT)
    big_key, big_value = record(big)
    assert json.loads(big_value)["data"]["description"]  # a valid event, only too large
    await publish(
        kafka, json_settings.kafka_topic, [good, (b"3", b"{not json"), (big_key, big_value)]
    )
    consumer.start()

    assert await _products(engine, consumer, {1}) == {1}, consumer.tail()
    letters = await read_topic(kafka, json_settings.kafka_dlq_topic, 2)
    assert [(r.key, r.value, header_map(r)["error.reason"]) for r in letters] == [
        (b"3", b"{not json", "invalid_json"),
        (big_key, big_value, "record_too_large"),
    ]
    assert consumer.stop() == 0

    lines = consumer.log_path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is JSON ...
    assert parsed and all(isinstance(line, dict) for line in parsed)  # ... and an object
    assert all({"timestamp", "level", "logger", "message"} <= line.keys() for line in parsed)
    about_letters = {
        line["reason"]: line for line in parsed if line["logger"] == "service.dead_letter"
    }
    assert {
        reason: (line["topic"], line["partition"], line["offset"], line["level"])
        for reason, line in about_letters.items()
    } == {
        "invalid_json": (json_settings.kafka_topic, 0, 1, "WARNING"),
        "record_too_large": (json_settings.kafka_topic, 0, 2, "WARNING"),
    }
    loggers = {line["logger"] for line in parsed}
    assert {"uvicorn.error", "service.rebalance"} <= loggers, loggers


def test_migrate_logs_json_too(json_settings: Settings) -> None:
    """`migrate` runs Alembic in-process: alembic.ini's logging must not replace LOG_FORMAT."""
    result = run_cli(json_settings, "migrate")
    assert result.returncode == 0, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines, "migrate logged nothing"
    for line in lines:
        entry = json.loads(line)  # fails on a text line
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
    assert any(json.loads(line)["logger"].startswith("alembic") for line in lines)
