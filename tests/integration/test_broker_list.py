"""KAFKA_BOOTSTRAP_SERVERS as a list of brokers: every Kafka client of the service is given
the whole list, and a broker of it that does not answer is skipped.

The dead broker is a free loopback port nobody listens on: connecting is refused at once,
as for a broker host that is down.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli.status import partition_lag
from service.health.checks import kafka_check
from service.kafka.dead_letter_producer import KafkaDeadLetterSink
from service.kafka.publisher import publish_pairs
from service.kafka.topics import ensure_topics, partitions_of
from service.write_path.transaction import BatchReport
from testbed.events import StreamSpec, generate_stream
from testbed.publish import publish
from tests.conftest import make_settings
from tests.integration.test_health import get_json, wait_for_status, wait_for_table
from tests.support.brokers import free_port
from tests.support.consumer import ConsumerProcess
from tests.support.services import PostgresEndpoint


@pytest.fixture
def dead_broker() -> str:
    return f"127.0.0.1:{free_port()}"


async def test_the_service_consumes_with_a_dead_broker_first_in_its_list(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    engine: AsyncEngine,
    tmp_path: Path,
    dead_broker: str,
) -> None:
    settings = make_settings(pg, f"{dead_broker},{kafka}", names, http_host="127.0.0.1")
    await ensure_topics(settings)
    pairs = generate_stream(StreamSpec(events=600, products=40, seed=7))
    await publish(kafka, settings.kafka_topic, pairs)
    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    try:
        url = consumer.http_url()
        await wait_for_table(engine, pairs, consumer)
        body = await wait_for_status(f"{url}/health/ready", 200, consumer)
        assert body["checks"]["kafka"] == {"ok": True}
        status, live = await get_json(f"{url}/health/live")
        assert status == 200, live
    finally:
        consumer.kill()
    assert consumer.starts == 1


class _Unused:
    async def submit(self, *args: object, **kwargs: object) -> BatchReport:
        raise AssertionError("nothing is consumed here")


async def test_every_client_skips_a_dead_first_broker(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    engine: AsyncEngine,
    dead_broker: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiokafka tries the list in a random order; here always in the given one, dead first.
    monkeypatch.setattr("aiokafka.conn.random.shuffle", lambda hosts: None)
    caplog.set_level(logging.ERROR, logger="aiokafka")
    settings = make_settings(pg, f"{dead_broker},{kafka}", names)

    await ensure_topics(settings)  # the admin client
    assert await partitions_of(settings, settings.kafka_topic) == [0, 1, 2]
    pairs = generate_stream(StreamSpec(events=30, products=5, seed=3))
    await publish_pairs(settings, settings.kafka_topic, pairs)
    lag = await partition_lag(settings)  # the CLI's consumer (`lag`)
    assert sum(missing for missing, _ in lag.values()) == len(pairs)

    sink = KafkaDeadLetterSink(settings, "t")
    await sink.start()
    await sink.stop()

    assert await kafka_check(settings)() is None  # readiness

    refused = [r for r in caplog.records if f'Unable connect to "{dead_broker}"' in r.getMessage()]
    # admin (ensure_topics, partitions_of), producer, consumer, DLQ producer, FastStream's
    # producer and admin: each tried the dead broker first, then went on.
    assert len(refused) >= 6, [r.getMessage() for r in caplog.records]


async def test_readiness_passes_while_any_broker_answers_even_behind_a_silent_one(
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    dead_broker: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One broker down or silent (accepting connections, never answering: a black-holed
    path) of the list is no reason to be unready while another serves; with none
    answering, the check fails and names them all."""
    monkeypatch.setattr("aiokafka.conn.random.shuffle", lambda hosts: None)  # the given order
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    mute = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        for broker_list in (f"{mute},{kafka}", f"{dead_broker},{mute},{kafka}"):
            check = kafka_check(make_settings(pg, broker_list, names))
            assert await check() is None, broker_list

        problem = await kafka_check(make_settings(pg, f"{dead_broker},{mute}", names))()
        assert problem is not None
        assert problem.startswith(f"cannot reach Kafka at {dead_broker}, {mute} "), problem
        assert "check KAFKA_BOOTSTRAP_SERVERS" in problem, problem
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
