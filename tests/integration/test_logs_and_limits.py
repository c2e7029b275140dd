"""LOG_FORMAT (json, and text that no record can break) and MAX_RECORD_BYTES on the real
service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.kafka.topics import ensure_topics
from testbed.events import record, upsert
from testbed.publish import publish, publish_acked
from tests.conftest import make_settings
from tests.support.cli import run_cli
from tests.support.consumer import ConsumerProcess, letters_logged, wait_for_products
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

    assert await wait_for_products(engine, consumer, {1}) == {1}, consumer.tail()
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
    # One line per letter, or one per batch of them (`letters`, `reasons`, `offsets`), with
    # the fields of the (first) letter's record.
    about_letters = [line for line in parsed if line["logger"] == "service.dead_letter"]
    reasons: Counter[str] = Counter()
    offsets: list[int] = []
    for line in about_letters:
        assert (line["topic"], line["partition"], line["level"]) == (
            json_settings.kafka_topic,
            0,
            "WARNING",
        ), line
        reasons.update(line.get("reasons", {line["reason"]: 1}))
        low, high = line.get("offsets", {}).get(f"{line['topic']}[0]", [line["offset"]] * 2)
        offsets.extend(range(low, high + 1))
    assert reasons == {"invalid_json": 1, "record_too_large": 1}
    assert offsets == [1, 2]
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


# What a producer may put in a record to forge a log line: a line break, then a line of the
# documented text format.
FORGED = "\n2026-01-01 00:00:00,000 CRITICAL service.pipeline: FORGED\r\x1b[2K\x85\u2028"
# README, Logs: `time LEVEL logger: message`.
TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<logger>[\w.]+): (?P<message>.*)"
)


def _forging_records() -> list[tuple[bytes, bytes, list[tuple[str, bytes | None]]]]:
    """Records with control characters in every field the service may log: each one is
    dead-lettered (its message quotes the field where it can)."""
    evil = FORGED.encode()
    headers = [(f"x-trace{FORGED}", evil), ("x-null", None)]
    event_type = upsert(1, 1) | {"event_type": f"x{FORGED}"}
    product_id = upsert(2, 1) | {"product_id": f"2{FORGED}"}
    event_id = upsert(3, 1) | {"event_id": f"id{FORGED}", "occurred_at": f"t{FORGED}"}
    name = upsert(4, 1, name=f"NUL\x00{FORGED}")
    return [
        (b"1", json.dumps(event_type).encode(), headers),
        (b"2", json.dumps(product_id).encode(), headers),
        (b"3", json.dumps(event_id).encode(), headers),
        (b"4", json.dumps(name).encode(), headers),
        (b"5" + evil, json.dumps(upsert(5, 1)).encode(), headers),  # key != product_id
        (b"6", b'{"event_type": "' + evil + b'", ' + evil, headers),  # invalid JSON
        (b"7", evil + b"\xff\xfe", headers),  # not UTF-8
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_record_can_forge_a_log_line(
    log_format: str,
    pg: PostgresEndpoint,
    engine: AsyncEngine,
    kafka: str,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    settings = make_settings(pg, kafka, names, log_format=log_format, kafka_topic_partitions=1)
    await ensure_topics(settings)
    records = _forging_records()
    good = record(upsert(9, 1))
    await publish_acked(kafka, settings.kafka_topic, [*records, good])
    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    try:
        assert await wait_for_products(engine, consumer, {9}) == {9}, consumer.tail()
        letters = await read_topic(kafka, settings.kafka_dlq_topic, len(records))
        assert len(letters) == len(records)
        # uvicorn's access log quotes the path of every request.
        path = urllib.parse.quote(f"/health/ready{FORGED}")
        await asyncio.to_thread(_get, consumer.http_url() + path)
        consumer.wait_for_log("/health/ready")
        assert consumer.stop() == 0
    finally:
        consumer.kill()

    lines = consumer.log_path.read_bytes().decode("utf-8", "replace").split("\n")
    assert lines[-1] == ""  # every line ends with a line feed, the last one included
    entries = [_parse(line, log_format) for line in lines[:-1]]
    # The forged text shows only inside the lines that quote it, never as a line of its own.
    forged = [e for e in entries if "FORGED" in e["message"]]
    assert forged, "no line quotes the forged text: the test lost its point"
    assert [e for e in entries if e["level"] == "CRITICAL"] == []
    # The event_type's letter, quoted alone or as the first of its reason in its batch's line.
    assert [
        e
        for e in forged
        if e["logger"] == "service.dead_letter"
        and re.search(r"@0(?: as invalid_event)?: value: Input tag 'x", e["message"])
    ], forged
    assert {e["logger"] for e in forged} == {"service.dead_letter", "uvicorn.access"}, forged
    logged = "\n".join(e["message"] for e in entries if e["logger"] == "service.dead_letter")
    assert letters_logged(logged) == len(records), entries


def _get(url: str) -> None:
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(url, timeout=10).close()


def _parse(line: str, log_format: str) -> dict[str, str]:
    """One line as one record of the documented format, or the test fails naming it."""
    if log_format == "json":
        entry = json.loads(line)
        assert isinstance(entry, dict) and line.isascii(), line
        assert {"timestamp", "level", "logger", "message"} <= entry.keys(), line
        return {key: entry[key] for key in ("level", "logger", "message")}
    found = TEXT_LINE.fullmatch(line)
    assert found is not None and line.isprintable(), repr(line)
    return found.groupdict()
