"""The checks behind /health/live and /health/ready: each asks one real thing.

Every factory returns a `health.Check`: None when fine, else what is wrong and the fix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.health.probe import Check, Problem
from service.kafka import clients
from service.observability.logs import brief
from service.postgres.schema_gate import SchemaNotReady, require_current_schema

log = logging.getLogger("service.probes")
KAFKA_TIMEOUT_S = 3.0


def kafka_check(settings: Settings) -> Check:
    """Some broker of KAFKA_BOOTSTRAP_SERVERS answers a metadata request on a fresh
    connection.

    Each broker is asked on its own, at once: one broker down of a cluster (a node killed, a
    rolling restart, a silent network path to it) is no reason to be unready while the others
    serve, and a request sent to whichever node the cluster's metadata names could pick the
    dead one. The connection is fresh each time: a long-lived client is asked on the same
    connection every time, and once its replies stop (a network partition, a half-open
    connection) each timed-out check leaves a request pending there, so aiokafka never times
    it out nor reconnects, and the check failed for ever after the network healed."""

    async def answers(server: str) -> None:
        # Bootstrapping is one metadata request to this broker; nothing else is asked.
        one = settings.model_copy(update={"kafka_bootstrap_servers": server})
        admin = clients.admin(one, request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await admin.start()
        finally:
            await admin.close()

    async def kafka() -> Problem:
        servers = settings.kafka_brokers
        outcomes = await asyncio.gather(*map(answers, servers), return_exceptions=True)
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if len(errors) < len(servers):
            return None
        return (
            f"cannot reach Kafka at {', '.join(servers)} (no broker answered within "
            f"{KAFKA_TIMEOUT_S:g}s: {brief(errors[0])}); check KAFKA_BOOTSTRAP_SERVERS and that "
            "the brokers run"
        )

    return kafka


# Whether a transaction begun now could write: a hot standby (a replica not yet promoted,
# e.g. the address already moved to it during a failover) and default_transaction_read_only
# both answer reads, and refuse every batch.
_WRITABLE = text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")


def database_check(engine: AsyncEngine, settings: Settings) -> Check:
    async def database() -> Problem:
        where = f"{settings.postgres_host}:{settings.postgres_port}"
        try:
            async with engine.connect() as connection:
                standby, read_only = (await connection.execute(_WRITABLE)).one()
        except Exception as error:
            return (
                f"cannot query PostgreSQL at {where} ({brief(error)}); check "
                "POSTGRES_HOST/POSTGRES_PORT, the credentials and that the server runs"
            )
        if standby:
            return (
                f"PostgreSQL at {where} is read-only: a standby in recovery (a replica not "
                "yet promoted); every batch is retried until it takes writes. Promote it, or "
                "check POSTGRES_HOST/POSTGRES_PORT lead to the primary"
            )
        if read_only == "on":
            return (
                f"PostgreSQL at {where} is read-only (default_transaction_read_only is on); "
                "every batch is retried until it takes writes. Check the database's and the "
                "role's default_transaction_read_only, and that POSTGRES_HOST leads to the "
                "primary"
            )
        return None

    return database


SchemaRequirement = Callable[[AsyncEngine], Awaitable[None]]


def schema_check(engine: AsyncEngine, require: SchemaRequirement = require_current_schema) -> Check:
    """The start-up schema requirement (service/postgres/schema_gate.py), asked again while running:
    a migration applied or rolled back under a running consumer makes it unready."""

    async def schema() -> Problem:
        try:
            await require(engine)
        except SchemaNotReady as error:
            return str(error)
        return None

    return schema


class Lifecycle:
    """Whether the app has finished starting (its subscriber has started: it joined the group
    and has its first assignment) and not begun stopping, and how long it has been starting."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.serving = False
        self.has_started = False
        self._clock = clock
        self._created = clock()

    def starting_for(self) -> float | None:
        """Seconds since the app was made, while it has not started yet; then None."""
        return None if self.has_started else self._clock() - self._created

    async def started(self) -> None:
        self.serving = self.has_started = True

    async def stopping(self) -> None:
        self.serving = False


def started_check(lifecycle: Lifecycle) -> Check:
    """The app has started (/health/started, the startup probe; and part of readiness)."""

    def started() -> Problem:
        waited = lifecycle.starting_for()
        if waited is None:
            return None
        return (
            f"the consumer has not started yet ({waited:.0f}s): it is connecting to Kafka and "
            "joining the group KAFKA_GROUP_ID names; a start that fails ends the process with "
            "an `error:` line, one that takes longer than START_TIMEOUT_S fails /health/live"
        )

    return started


def consumer_task_check(subscriber: Any, lifecycle: Lifecycle, start_timeout_s: float) -> Check:
    """The FastStream subscriber still runs its consume loop (it restarts a loop that
    raised; one that ended is gone for good), and a start does not last forever: a failed
    start ends the process (service/cli/serving.py), one that hangs fails this check."""

    def consumer_task() -> Problem:
        if not lifecycle.serving:
            waited = lifecycle.starting_for()
            if waited is not None and waited > start_timeout_s:
                return (
                    f"the consumer has not started within START_TIMEOUT_S={start_timeout_s:g}s "
                    "(see the log for what it waits for: Kafka, the group's rebalance); restart "
                    "the process"
                )
            return None
        if not subscriber.running:
            return "the Kafka subscriber has stopped while the service runs; restart the process"
        tasks: Iterable[asyncio.Task[Any]] = getattr(subscriber, "tasks", ())
        if not any(not task.done() for task in tasks):
            return (
                "the Kafka consume loop has ended (see the ERROR lines of service.broker in the "
                "log); restart the process"
            )
        return None

    return consumer_task


def consumer_of(subscriber: Any) -> Callable[[], AIOKafkaConsumer | None]:
    """The aiokafka consumer of a FastStream Kafka subscriber (None until it has started)."""
    return lambda: getattr(subscriber, "consumer", None)
