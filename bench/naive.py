"""The naive baseline: one message, one session, one transaction.

    python -m bench.naive --topic T --group G --target N --time-limit S

A FastStream subscriber (not batch, FastStream's default acknowledgement) validates each
record with `parse_event`, and per record opens an AsyncSession on the service's own engine,
records a `stock.adjusted` event's id in processed_events (a duplicate ends there; upserts
and deletes are idempotent by version and keep no id, as in the service), reads the product
row, applies `apply_event`, inserts or updates the row, and commits. Unusable records are skipped
(no dead-letter topic). Settings come from the environment, as for the service.

It stops after `--target` records or `--time-limit` seconds after its first record, and
prints JSON lines on stdout: progress about every second, then one line with `"done": true`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config.settings import load_settings
from service.core.contract import InvalidEvent, InvalidJson, parse_event
from service.core.domain import Applied, ProductState, Rejected, apply_event, needs_claim
from service.core.records import Record
from service.observability.logs import configure_logging
from service.postgres.engine import make_engine, make_session_factory

MARK = text(
    "INSERT INTO processed_events (event_id) VALUES (:id) ON CONFLICT DO NOTHING RETURNING event_id"
)
UNMARK = text("DELETE FROM processed_events WHERE event_id = :id")  # a rejected claim
READ = text(
    "SELECT id, name, description, price, quantity, version, deleted_at "
    "FROM products WHERE id = :id FOR UPDATE"
)
INSERT = text(
    "INSERT INTO products (id, name, description, price, quantity, version, deleted_at) "
    "VALUES (:id, :name, :description, :price, :quantity, :version, :deleted_at)"
)
UPDATE = text(
    "UPDATE products SET name = :name, description = :description, price = :price, "
    "quantity = :quantity, version = :version, deleted_at = :deleted_at, updated_at = now() "
    "WHERE id = :id"
)


class NaiveSink:
    """Counts what it did; `done` is set once the target or the time limit is reached."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], target: int, time_limit: float
    ) -> None:
        self.sessions = sessions
        self.target = target
        self.time_limit = time_limit
        self.fates: Counter[str] = Counter()
        self.handled = 0
        self.first_at: float | None = None
        self.first_wall: float | None = None  # wall clock, for the parent's start-up figure
        self.last_at: float | None = None
        self.done = asyncio.Event()

    async def handle(self, record: Record) -> None:
        if self.done.is_set():
            return
        if self.first_at is None:
            self.first_at, self.first_wall = time.perf_counter(), time.time()
        try:
            event = parse_event(record.value)
            if record.key and record.key != str(event.product_id).encode():
                raise InvalidEvent("key does not match product_id")
        except (InvalidJson, InvalidEvent):
            self.fates["invalid"] += 1
        else:
            async with self.sessions() as session, session.begin():
                claim = needs_claim(event)
                marked = not claim or (await session.execute(MARK, {"id": event.event_id})).first()
                if not marked:
                    self.fates["duplicate"] += 1
                else:
                    row = (await session.execute(READ, {"id": event.product_id})).first()
                    current = ProductState(**row._mapping) if row is not None else None
                    outcome = apply_event(current, event)
                    if claim and isinstance(outcome, Rejected):
                        await session.execute(UNMARK, {"id": event.event_id})
                    if isinstance(outcome, Applied):
                        p = outcome.product
                        await session.execute(
                            INSERT if current is None else UPDATE,
                            {
                                "id": p.id,
                                "name": p.name,
                                "description": p.description,
                                "price": p.price,
                                "quantity": p.quantity,
                                "version": p.version,
                                "deleted_at": p.deleted_at,
                            },
                        )
                    self.fates[type(outcome).__name__.lower()] += 1
        self.handled += 1
        self.last_at = time.perf_counter()
        if self.handled >= self.target or self.last_at - self.first_at >= self.time_limit:
            self.done.set()

    def report(self, done: bool = False) -> dict[str, Any]:
        seconds = (
            (self.last_at - self.first_at)
            if self.first_at is not None and self.last_at is not None
            else 0.0
        )
        return {
            "done": done,
            "count": self.handled,
            "seconds": seconds,
            "first_wall": self.first_wall,
            "fates": self.fates,
        }


async def _raw(message: Any) -> Any:
    return message.raw_message


async def run(topic: str, group: str, target: int, time_limit: float, idle_limit: float) -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = make_engine(settings)
    sink = NaiveSink(make_session_factory(engine), target, time_limit)
    broker = KafkaBroker(
        settings.kafka_brokers,
        client_id="inventory-bench-naive",
        logger=logging.getLogger("bench.naive"),
        log_level=logging.DEBUG,  # no per-message log lines at LOG_LEVEL=WARNING
    )
    subscriber = broker.subscriber(
        topic, group_id=group, auto_offset_reset="earliest", decoder=_raw
    )

    @subscriber
    async def consume(message: KafkaMessage) -> None:
        await sink.handle(message.raw_message)

    def emit(done: bool = False) -> None:
        print(json.dumps(sink.report(done)), flush=True)

    await broker.start()
    started = time.perf_counter()
    try:
        while not sink.done.is_set():
            try:
                await asyncio.wait_for(sink.done.wait(), 1.0)
            except TimeoutError:
                emit()
                if sink.first_at is None and time.perf_counter() - started > idle_limit:
                    break
    finally:
        await broker.stop()
        await engine.dispose()
    emit(done=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--target", type=int, required=True, help="stop after this many records")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds after the first")
    parser.add_argument("--idle-limit", type=float, default=60.0, help="give up if none arrive")
    args = parser.parse_args(argv)
    coroutine = run(args.topic, args.group, args.target, args.time_limit, args.idle_limit)
    try:
        import uvloop  # the service runs on uvloop too
    except ImportError:  # pragma: no cover
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


if __name__ == "__main__":
    main()
