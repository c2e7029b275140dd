"""One benchmark invocation: prepare the database, publish each size once, run every mode on
it, then the steady runs (one per offered rate), and hand back the results."""

from __future__ import annotations

import gc
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench import database, modes, stream, write_only
from bench.measure import Progress, host_busy, rate_text, say
from bench.peers import connect, upserts
from bench.peers import run as peer_run
from bench.prefill import Prefill
from bench.report import Result
from bench.steady import SteadySpec, steady
from bench.target import BENCH_DATABASE, Target, code_state, load_target, run_id
from bench.verify import expected_outcome
from testbed.publish import publish_bulk, split_by_partition
from testbed.run_database import run_database

MODES = ("consume-only", "validate-only", "write-only", "naive", "service", "quix", "connect")
DEFAULT_MODES = ("consume-only", "validate-only", "write-only", "naive", "service")
PEER_MODES = ("quix", "connect")
WRITING_MODES = (
    "write-only",
    "naive",
    "service",
)  # they run once per prefill point  # they get the stream's upserts (bench/peers)
# The modes run on the upserts stream too.
UPSERT_MODES = ("consume-only", "validate-only", "write-only", "service", *PEER_MODES)
code_state_at_start = [""]  # other people may edit service/ while a long run goes on


@dataclass
class Options:
    sizes: list[int]
    modes: list[str]
    batch_sizes: list[int]
    replicas: list[int]
    products: int = 200
    seed: int = 7
    partitions: int = 6
    service_env: dict[str, str] = field(default_factory=dict)
    naive_cap: int = 50_000
    naive_time_limit: float = 60.0
    steady: list[SteadySpec] = field(default_factory=list)  # one run per offered rate
    verify_limit: int = 1_000_000
    mode_timeout: float = 3600.0
    keep_topics: bool = False
    profile: Path | None = None
    log_dir: Path | None = None
    # None: a database of the run's own (BENCH_DATABASE_<pid>), dropped if the run succeeded.
    database: str | None = None
    # Each writing mode runs once per point (None: the tables start empty).
    prefills: list[Prefill | None] = field(default_factory=lambda: [None])
    # Each peer runs once per setting, a row each, so the report can show its best.
    quix_commit_intervals: list[float] = field(
        default_factory=lambda: [peer_run.QUIX_COMMIT_INTERVAL_S]
    )
    connect_batch_sizes: list[int] = field(default_factory=lambda: [connect.DEFAULT_BATCH])


@dataclass
class Outcome:
    results: list[Result]
    header: list[str]
    meta: dict[str, object]
    failed: bool
    profile_summary: list[str] = field(default_factory=list)


def _header(target: Target, rid: str, options: Options, log_dir: Path) -> list[str]:
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"inventory-sink benchmark, run {rid} ({time.strftime('%Y-%m-%d %H:%M:%S')})",
        f"host: {os.cpu_count()} CPUs, {memory_gb:.0f} GB RAM, Python {platform.python_version()};"
        f" Kafka {target.bootstrap} and PostgreSQL {target.base.postgres_host}:"
        f"{target.base.postgres_port}/{target.base.postgres_db} run on this host too",
        f"stream: testbed.events.generate_stream(products={options.products}, "
        f"seed={options.seed}); {options.partitions} partitions; service env overrides: "
        f"{options.service_env or 'none'}; logs in {log_dir}",
        code_state(),
        *(
            f"prefill point {i + 1}: {point.describe()}"
            for i, point in enumerate(options.prefills)
            if point is not None
        ),
        f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


async def _attempt(
    what: str, results: list[Result], failed: list[str], make: Callable[[], Awaitable[Result]]
) -> None:
    busy_before = await host_busy(1.0)
    try:
        result = await make()
    except Exception as error:
        say(f"{what}: FAILED: {error}\n{traceback.format_exc()}")
        failed.append(f"{what}: {error}")
        return
    result.series["host_busy_before"] = busy_before
    code = result.series.get("code")
    if code is not None and code != code_state_at_start[0]:
        result.notes.append(f"the code changed since the run began; at this mode's start: {code}")
    if busy_before > 0.15:
        result.notes.append(
            f"host CPUs were {100 * busy_before:.0f}% busy just before this run (other "
            "work shares the CPUs, broker and database): expect noise"
        )
    results.append(result)
    say(f"{what}: {result.events:,} events in {result.seconds:.2f} s = {rate_text(result.rate)}")


async def _publish(target: Target, name: str, pairs: stream.Pairs, options: Options) -> None:
    await stream.create_topic(target.bootstrap, name, options.partitions)
    size = len(pairs)
    seconds = await publish_bulk(
        target.bootstrap, name, pairs, options.partitions, Progress("publish", size, "sent")
    )
    say(f"publish: {size:,} records to {name} in {seconds:.1f} s ({rate_text(size / seconds)})")


async def _size(
    target: Target,
    rid: str,
    size: int,
    options: Options,
    log_dir: Path,
    created: list[str],
    results: list[Result],
    failed: list[str],
) -> None:
    name = f"bench.{rid}.n{size}"
    created.append(name)
    started = time.perf_counter()
    pairs = stream.build(size, options.products, options.seed)
    say(f"stream: {size:,} events generated in {time.perf_counter() - started:.1f} s")
    await _publish(target, name, pairs, options)
    chosen = set(options.modes)
    verify = size <= options.verify_limit
    expected = None
    if chosen - {"consume-only", "validate-only", *PEER_MODES} and verify:
        started = time.perf_counter()
        expected = expected_outcome(pairs)
        say(f"oracle: expected outcome computed in {time.perf_counter() - started:.1f} s")
    upserts_topic = None
    if chosen & set(PEER_MODES):
        upserts_topic = await _upserts(
            target, rid, name, size, pairs, options, log_dir, created, verify
        )
    del pairs
    gc.collect()
    gc.freeze()  # the oracle's million objects must not slow consume-only's collections
    ends = await stream.end_offsets(target.bootstrap, name)
    topic = modes.Topic(
        target,
        rid,
        name,
        size,
        options.partitions,
        ends,
        log_dir,
        expected,
        extra_topics=created,
    )
    if topic.total != size:
        raise RuntimeError(f"{name} holds {topic.total} records, expected {size}")
    mixed = [mode for mode in options.modes if mode not in PEER_MODES]
    await _run_modes(topic, mixed, options, results, failed)
    if upserts_topic is not None:
        on_upserts = [mode for mode in options.modes if mode in UPSERT_MODES]
        await _run_modes(upserts_topic, on_upserts, options, results, failed)


async def _upserts(
    target: Target,
    rid: str,
    name: str,
    size: int,
    pairs: stream.Pairs,
    options: Options,
    log_dir: Path,
    created: list[str],
    verify: bool,
) -> modes.Topic:
    """The peers' stream: the valid upserts of `pairs` (and their Connect envelopes), each on
    a topic of its own, with what every table must hold."""
    started = time.perf_counter()
    kept = upserts.upserts(pairs)
    plain, envelope = f"{name}.upserts", f"{name}.upserts.connect"
    created.append(plain)
    await _publish(target, plain, kept, options)
    if "connect" in options.modes:
        created.append(envelope)
        await _publish(target, envelope, upserts.connect_envelope(kept), options)
    contract = expected_outcome(kept)
    peer_rows = upserts.last_write_wins(kept)
    peers = upserts.PeerStream(
        expected=peer_rows,
        sentinels=upserts.sentinels(split_by_partition(kept, options.partitions)),
        envelope_topic=envelope,
        differences=upserts.contract_differences(peer_rows, contract.products),
    )
    say(
        f"upserts: {len(kept):,} of {size:,} records, {len(peer_rows):,} products "
        f"({time.perf_counter() - started:.1f} s with publishing and expectations)"
    )
    ends = await stream.end_offsets(target.bootstrap, plain)
    return modes.Topic(
        target,
        rid,
        plain,
        size,
        options.partitions,
        ends,
        log_dir,
        contract if verify else None,
        extra_topics=created,
        stream="upserts",
        peers=peers,
    )


async def _run_modes(
    topic: modes.Topic,
    chosen: list[str],
    options: Options,
    results: list[Result],
    failed: list[str],
) -> None:
    for mode in chosen:
        # A writing mode runs once per prefill point, each on a consumer group of its own.
        for point in options.prefills if mode in WRITING_MODES else [None]:
            await _run_mode(replace(topic, prefill=point), mode, options, results, failed)


async def _run_mode(
    topic: modes.Topic,
    mode: str,
    options: Options,
    results: list[Result],
    failed: list[str],
) -> None:
    size, timeout = topic.size, options.mode_timeout
    where = f"{size:,}" if topic.stream == "mixed" else f"{size:,} [{topic.stream}]"
    if topic.prefill is not None:
        where += f" @{topic.prefill.short()}"
    if mode == "consume-only":
        await _attempt(
            f"consume-only {where}",
            results,
            failed,
            lambda: modes.consume_only(topic, timeout),
        )
    elif mode == "validate-only":
        await _attempt(
            f"validate-only {where}",
            results,
            failed,
            lambda: modes.consume_only(topic, timeout, validate=True),
        )
    elif mode == "write-only":
        for batch in options.batch_sizes:
            await _attempt(
                f"write-only {where} (batch {batch})",
                results,
                failed,
                lambda batch=batch: write_only.write_only(topic, batch, timeout),
            )
    elif mode == "naive":
        await _attempt(
            f"naive {where}",
            results,
            failed,
            lambda: modes.naive(topic, options.naive_cap, options.naive_time_limit, timeout),
        )
    elif mode == "service":
        for replicas in options.replicas:
            for batch in options.batch_sizes:
                profile = options.profile if not any(r.mode == "service" for r in results) else None
                await _attempt(
                    f"service {where} (batch {batch}, {replicas} replica(s))",
                    results,
                    failed,
                    lambda batch=batch, profile=profile, replicas=replicas: modes.service(
                        topic, batch, options.service_env, timeout, profile, replicas
                    ),
                )
    elif mode == "quix":
        for interval in options.quix_commit_intervals:
            await _attempt(
                f"quix {where} ({peer_run.quix_setting(interval)})",
                results,
                failed,
                lambda interval=interval: peer_run.quix(topic, interval, timeout),
            )
    elif mode == "connect":
        for batch in options.connect_batch_sizes:
            await _attempt(
                f"connect {where} ({peer_run.connect_setting(batch)})",
                results,
                failed,
                lambda batch=batch: peer_run.kafka_connect(topic, batch, timeout),
            )


async def _drop_own_database(target: Target, failed: list[str], header: list[str]) -> None:
    """Drop the run's own database (and its peers') once the run succeeded; a failed run's
    tables stay, to be read."""
    name = target.base.postgres_db
    if failed:
        header.append(f"tables kept for reading in database {name} (drop it when done)")
        return
    try:
        await database.drop_run_databases(target, PEER_MODES)
    except Exception as error:
        say(f"could not drop database {name}: {error}")
        header.append(f"database {name} could not be dropped ({error}): drop it by hand")


async def run(options: Options) -> Outcome:
    target = load_target(options.database or run_database(BENCH_DATABASE))
    rid = run_id()
    log_dir = options.log_dir or Path(tempfile.gettempdir()) / "inventory-bench" / rid
    log_dir.mkdir(parents=True, exist_ok=True)
    code_state_at_start[0] = code_state()
    header = _header(target, rid, options, log_dir)
    for line in header:
        say(line)
    await database.ensure_database(target)
    database.migrate(target)
    results: list[Result] = []
    failed: list[str] = []
    created: list[str] = []
    try:
        for size in options.sizes:
            try:
                await _size(target, rid, size, options, log_dir, created, results, failed)
            except Exception as error:
                say(f"size {size:,}: FAILED: {error}\n{traceback.format_exc()}")
                failed.append(f"size {size:,}: {error}")
        for spec in options.steady:
            await _attempt(
                f"steady {spec.rate}/s",
                results,
                failed,
                lambda spec=spec: steady(target, rid, spec, options.service_env, log_dir, created),
            )
    finally:
        if not options.keep_topics:
            try:
                await stream.delete_topics(target.bootstrap, created)
            except Exception as error:
                say(f"could not delete topics {created}: {error}")
    for problem in failed:
        header.append(f"FAILED: {problem}")
    if options.database is None:  # the run's own: nobody else reads it
        await _drop_own_database(target, failed, header)
    meta: dict[str, object] = {
        "run_id": rid,
        "header": header,
        "options": {
            "sizes": options.sizes,
            "modes": options.modes,
            "batch_sizes": options.batch_sizes,
            "products": options.products,
            "seed": options.seed,
            "partitions": options.partitions,
            "service_env": options.service_env,
            "naive_cap": options.naive_cap,
            "naive_time_limit": options.naive_time_limit,
            "steady": [asdict(spec) for spec in options.steady],
            "prefills": [asdict(p) if p else None for p in options.prefills],
            "quix_commit_intervals": options.quix_commit_intervals,
            "connect_batch_sizes": options.connect_batch_sizes,
        },
        "failed": failed,
    }
    return Outcome(results, header, meta, bool(failed))
