"""`python -m service positions [reset ...]`: stored positions next to the log's, and resets.

A reset writes the position and the topic's current id. It is safe while the consumer runs
for a partition whose status is not ok: the consumer holds such a partition stopped (nothing
of it is written) and picks the new position up within POSITION_CHECK_INTERVAL_S. Moving a
partition that is ok under a running consumer would race with its batches, so that needs the
group to have no members (stop the consumers first) or --force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.errors import GroupAuthorizationFailedError

from service.cli.exit_codes import CommandError, ExitCode
from service.cli.status import print_json, started_consumer
from service.config.settings import Settings
from service.core.position_verdict import LogBounds, Status, Stored, classify, reset_target
from service.kafka import clients
from service.kafka.refusal import KafkaAccessDenied
from service.kafka.topics import partitions_of
from service.positions.guard import log_bounds
from service.postgres import consumer_offsets
from service.postgres.engine import connected, make_session_factory

# Statuses a running consumer never writes (it stops them): safe to reset under it.
HELD_BY_CONSUMER = {Status.AHEAD_OF_LOG, Status.TOPIC_ID_CHANGED, Status.BEHIND_LOG_START}


@dataclass(frozen=True)
class PartitionPosition:
    partition: int
    stored: Stored | None
    log: LogBounds
    status: Status


async def read_report(settings: Settings) -> list[PartitionPosition]:
    """Every partition of KAFKA_TOPIC: stored position, log bounds and status."""
    topic = settings.kafka_topic
    partitions = await partitions_of(settings, topic)
    if not partitions:
        raise CommandError(
            f"topic {topic!r} does not exist on {', '.join(settings.kafka_brokers)}; "
            "check KAFKA_TOPIC and KAFKA_BOOTSTRAP_SERVERS",
            ExitCode.USAGE,
        )
    async with started_consumer(settings, enable_auto_commit=False) as consumer:
        bounds = await log_bounds(consumer, {(topic, p) for p in partitions})
    async with connected(settings) as engine, make_session_factory(engine)() as session:
        stored = await consumer_offsets.read(session, settings.kafka_group_id, topic)
    rows = []
    for partition in partitions:
        log = bounds[(topic, partition)]
        kept = stored.get(partition)
        rows.append(PartitionPosition(partition, kept, log, classify(kept, log)))
    return rows


def render(settings: Settings, rows: Sequence[PartitionPosition]) -> str:
    topic_id = next((row.log.topic_id for row in rows if row.log.topic_id), None)
    lines = [
        f"{settings.kafka_topic} (topic id {topic_id or 'unknown'}), "
        f"group {settings.kafka_group_id}",
        f"{'partition':>9} {'stored':>12} {'log start':>12} {'log end':>12}  status",
    ]
    for row in rows:
        stored = "-" if row.stored is None else str(row.stored.offset)
        lines.append(
            f"{row.partition:>9} {stored:>12} {row.log.start:>12} {row.log.end:>12}  {row.status}"
        )
    bad = [row for row in rows if row.status in HELD_BY_CONSUMER]
    if bad:
        lines.append(
            f"{len(bad)} partition(s) need a decision; see README (Operations: stored "
            "positions) and `python -m service positions reset --help`"
        )
    return "\n".join(lines)


def report_json(settings: Settings, rows: Sequence[PartitionPosition]) -> dict[str, object]:
    return {
        "topic": settings.kafka_topic,
        "group": settings.kafka_group_id,
        "partitions": [
            {
                "partition": row.partition,
                "stored": None if row.stored is None else row.stored.offset,
                "log_start": row.log.start,
                "log_end": row.log.end,
                "topic_id": row.log.topic_id,
                "status": str(row.status),
                "needs_decision": row.status in HELD_BY_CONSUMER,
            }
            for row in rows
        ],
    }


async def print_report(settings: Settings, as_json: bool = False) -> bool:
    """Print the table (or JSON); True when no partition needs a decision."""
    rows = await read_report(settings)
    if as_json:
        print_json(report_json(settings, rows))
    else:
        print(render(settings, rows))
    return not any(row.status in HELD_BY_CONSUMER for row in rows)


async def group_members(settings: Settings) -> int:
    """How many consumers are in KAFKA_GROUP_ID now."""
    admin = clients.admin(settings)
    try:
        await admin.start()
        (response,) = await admin.describe_consumer_groups([settings.kafka_group_id])
    except GroupAuthorizationFailedError as error:
        raise KafkaAccessDenied("Describe", "group", settings.kafka_group_id) from error
    finally:
        await admin.close()
    (group,) = response.to_object()["groups"]
    return len(group["members"])


async def reset(
    settings: Settings,
    partitions: Sequence[int] | None,
    to: str,
    dry_run: bool,
    force: bool = False,
) -> int:
    """Set the stored positions of `partitions` (None: all) to `to`; returns the exit code."""
    rows = {row.partition: row for row in await read_report(settings)}
    chosen = sorted(rows) if partitions is None else sorted(set(partitions))
    unknown = [p for p in chosen if p not in rows]
    if unknown:
        raise CommandError(
            f"{settings.kafka_topic} has no partition {unknown}; name one of {sorted(rows)}",
            ExitCode.USAGE,
        )
    plan: list[tuple[PartitionPosition, int]] = []
    for partition in chosen:
        row = rows[partition]
        try:
            plan.append((row, reset_target(to, row.log)))
        except ValueError as error:
            raise CommandError(f"partition {partition}: {error}", ExitCode.USAGE) from None
    running = [row.partition for row, _ in plan if row.status not in HELD_BY_CONSUMER]
    if running and not force and not dry_run and await group_members(settings):
        raise CommandError(
            f"partitions {running} are in use by the running consumers of group "
            f"{settings.kafka_group_id} (their positions match the log); stop the consumers "
            "first, or pass --force if you know none is consuming them",
            ExitCode.REFUSED,
        )
    for row, offset in plan:
        before = "-" if row.stored is None else str(row.stored.offset)
        print(
            f"{settings.kafka_topic}[{row.partition}]: {before} -> {offset} "
            f"({row.status}; log {row.log.start}..{row.log.end})"
        )
    if dry_run:
        print("dry run: nothing changed")
        return ExitCode.OK
    async with (
        connected(settings) as engine,
        make_session_factory(engine)() as session,
        session.begin(),
    ):
        for row, offset in plan:
            await consumer_offsets.set_position(
                session,
                settings.kafka_group_id,
                settings.kafka_topic,
                row.partition,
                offset,
                row.log.topic_id,
            )
    print(
        f"reset {len(plan)} position(s); a running consumer resumes a stopped partition "
        f"within POSITION_CHECK_INTERVAL_S ({settings.position_check_interval_s:g}s)"
    )
    return ExitCode.OK
