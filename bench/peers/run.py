"""The peer modes: start a peer on its copy of the upserts, time it, account its CPU, check
its table.

Start-up is process start until its consumer group is Stable with members (partitions
assigned). The timed part runs from then until the table holds every record: each partition's
last product (the sentinels) is polled every 0.1 s, and once all hold their final rows the
whole table is compared with the last-write-wins expectation (polling goes on if it differs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bench import database
from bench.measure import HostCpu, MemorySampler, Progress
from bench.modes import Topic, cpu_account, stop_accounts
from bench.peers import connect
from bench.peers.install import HERE, installed
from bench.peers.upserts import PeerRow, PeerStream
from bench.process import Child
from bench.report import Result
from testbed.oracle import diff

# Quix Streams' default (it writes at each checkpoint), unless --quix-commit-intervals says
# otherwise
QUIX_COMMIT_INTERVAL_S = 5.0

COLUMNS = "id, name, description, price, quantity, version, occurred_at"


def quix_setting(commit_interval: float) -> str:
    """The setting in a Quix row's label: each commit interval is a row of its own."""
    return f"commit {commit_interval:g} s"


def connect_setting(batch: int) -> str:
    """The setting in a Connect row's label: each batch size is a row of its own."""
    return f"batch {batch}"


async def reset_table(topic: Topic, name: str) -> None:
    """Create the peer's database if missing, and its `products` table afresh."""
    await database.ensure_database(topic.target, name)
    connection = await asyncpg.connect(topic.target.dsn(name), timeout=10)
    try:
        await connection.execute((HERE / "schema.sql").read_text())
    finally:
        await connection.close()


async def read_rows(
    connection: asyncpg.Connection, ids: list[int] | None = None
) -> dict[int, PeerRow]:
    if ids is None:
        rows = await connection.fetch(f"SELECT {COLUMNS} FROM products")
    else:
        rows = await connection.fetch(f"SELECT {COLUMNS} FROM products WHERE id = ANY($1)", ids)
    return {row["id"]: PeerRow(**dict(row)) for row in rows}


async def group_stable(admin: AIOKafkaAdminClient, group: str) -> bool:
    (response,) = await admin.describe_consumer_groups([group])
    groups = response.to_object()["groups"]
    return bool(groups and groups[0]["state"] == "Stable" and groups[0]["members"])


async def run_peer(
    topic: Topic,
    mode: str,
    child: Child,
    group: str,
    database_name: str,
    timeout: float,
    setting: str,
    failure: Callable[[], Awaitable[str | None]] | None = None,
) -> Result:
    """Run `child` (already configured with `setting`) until its table is complete; the
    Result, labelled with `setting`."""
    peers: PeerStream | None = topic.peers
    assert peers is not None, "peer modes run on the upserts stream"
    expected = peers.expected
    wanted = {pid: expected[pid] for pid in peers.sentinels}
    connection = await asyncpg.connect(topic.target.dsn(database_name), timeout=10)
    admin = AIOKafkaAdminClient(bootstrap_servers=topic.target.bootstrap, client_id="bench")
    await admin.start()
    progress = Progress(f"{mode} ({setting})", len(expected), "products")
    spawned = time.perf_counter()
    await child.start()
    sampler = MemorySampler(child.pid)
    sampler.start()
    account = None
    compared = polls = 0
    try:
        while not await group_stable(admin, group):
            child.check_alive()
            if time.perf_counter() - spawned > timeout:
                raise TimeoutError(f"{mode}: group {group} not Stable within {timeout:.0f} s")
            await asyncio.sleep(0.1)
        joined = time.perf_counter()
        account = await cpu_account(topic, [child.pid], connection, database_name)
        host = HostCpu()
        checked_failure = joined
        while True:
            polled = time.perf_counter()
            seen = await read_rows(connection, list(wanted))
            if seen == wanted:
                compared += 1
                if not diff(expected, await read_rows(connection), limit=1):
                    done_at = polled
                    break
            polls += 1
            if polls % 20 == 0:
                progress(int(await connection.fetchval("SELECT count(*) FROM products")))
            child.check_alive()
            now = time.perf_counter()
            if failure is not None and now - checked_failure > 2.0:
                checked_failure = now
                problem = await failure()
                if problem:
                    raise RuntimeError(f"{problem}\n(log {child.log_path})")
            if now - spawned > timeout:
                actual = await read_rows(connection)
                raise TimeoutError(
                    f"{mode}: table incomplete after {timeout:.0f} s: "
                    + "; ".join(diff(expected, actual, limit=3))
                    + f" (log {child.log_path})"
                )
            await asyncio.sleep(0.1)
        cpu = await stop_accounts(account, host, done_at - joined)
        peak = sampler.peak_mb()
    finally:
        if account is not None:
            await account.stop()
        await sampler.stop()
        code = await child.stop(timeout=30.0)
        await admin.close()
        await connection.close()
    result = Result(mode, topic.size, topic.total, done_at - joined, stream=topic.stream, cpu_s=cpu)
    result.setting = setting
    result.startup_s = joined - spawned
    result.peak_rss_mb = peak
    result.series["rss_mb"] = sampler.samples
    result.notes.append(
        f"verified: its table matches the last-write-wins expectation ({len(expected):,} "
        f"products, compared in full {compared} time(s)); timed from group assignment"
    )
    result.notes.append(peers.differences)
    if code not in (0, None, 143, -15):
        result.notes.append(f"{mode} exited with code {code} after SIGTERM ({child.log_path})")
    return result


async def quix(topic: Topic, commit_interval: float, timeout: float) -> Result:
    """Quix Streams' PostgreSQLSink (upsert on id) on the plain upserts topic, checkpointing
    every `commit_interval` seconds."""
    peer = installed()
    peer.require("quix")
    name = database.peer_database(topic.target, "quix")
    await reset_table(topic, name)
    # A group, log and state folder per setting: a second setting must read from the start.
    variant = f"c{commit_interval:g}"
    group = f"{topic.group('quix')}-{variant}"
    workdir = topic.log_dir / f"quix-{topic.size}-{variant}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = topic.target.env(topic.target.settings(postgres_db=name))
    child = Child(
        f"quix-{topic.size}-{variant}",
        [
            str(HERE / "quix_app.py"),
            *("--topic", topic.name, "--group", group),
            *("--commit-interval", str(commit_interval), "--state-dir", str(workdir)),
        ],
        env,
        topic.log_dir,
        pipe_stdout=False,
        program=str(peer.quix_python),
    )
    setting = quix_setting(commit_interval)
    result = await run_peer(topic, "quix", child, group, name, timeout, setting)
    result.notes.append(
        f"quixstreams {peer.quix_version}, commit_interval {commit_interval:g} s "
        "(rows are written at checkpoints); at-least-once, no deletes, no deltas, no DLQ"
    )
    return result


async def kafka_connect(topic: Topic, batch: int, timeout: float) -> Result:
    """Kafka Connect standalone + the Debezium JDBC sink on the envelope topic, `batch` rows
    per poll and per statement."""
    peer = installed()
    peer.require("connect")
    peers = topic.peers
    assert peers is not None
    name = database.peer_database(topic.target, "connect")
    await reset_table(topic, name)
    base = topic.target.base
    # A connector (so a group), log and work folder per setting: each reads from the start.
    run, argv = connect.prepare(
        peer,
        f"bench-{topic.run_id}-{topic.size}-b{batch}",
        peers.envelope_topic,
        topic.target.bootstrap,
        {
            "host": base.postgres_host,
            "port": str(base.postgres_port),
            "database": name,
            "user": base.postgres_user,
            "password": base.postgres_password.get_secret_value(),
        },
        topic.log_dir / f"connect-{topic.size}-b{batch}",
        batch,
    )
    dlq = f"{peers.envelope_topic}.dlq"  # one for every setting: deleted once
    if dlq not in topic.extra_topics:
        topic.extra_topics.append(dlq)
    child = Child(
        f"connect-{topic.size}-b{batch}",
        argv[1:],
        topic.target.env(base),
        topic.log_dir,
        pipe_stdout=False,
        program=argv[0],
    )

    async def failed() -> str | None:
        return await connect.failure(run)

    setting = connect_setting(batch)
    result = await run_peer(topic, "connect", child, run.group, name, timeout, setting, failed)
    result.notes.append(
        f"Kafka Connect {peer.kafka_version} standalone + Debezium JDBC sink "
        f"{peer.debezium_version}: upsert, batch {batch} (UNNEST), JSON schema+payload "
        f"envelope (topic {peers.envelope_topic}); heap {connect.HEAP}; at-least-once"
    )
    return result
