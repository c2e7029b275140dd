"""`python -m bench run`: benchmark inventory-sink on the local broker and database.

Examples:
    python -m bench run --smoke
    python -m bench run --sizes 100k,1M --modes consume-only,naive,service
    python -m bench run --sizes 100k --modes service --batch-sizes 250,1000,2000,5000 --plot b.png
    python -m bench run --steady-rate 5000,20000 --duration 60
    python -m bench run --sizes 1M --products 50000 --modes write-only,service \
        --prefill-products 0,1M,10M,10M --prefill-processed 0,0,0,30M   # the cost curve
    python -m bench run --sizes 200k --products 50000 \
        --modes consume-only,validate-only,service,quix,connect   # peers: scripts/bench-peers
    python -m bench run --sizes 1M --products 50000 --modes service,quix,connect \
        --quix-commit-intervals 1,5,30 --connect-batch-sizes 500,2000,5000   # each peer's best
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.peers.connect import DEFAULT_BATCH
from bench.peers.install import PeersMissing, installed
from bench.peers.run import QUIX_COMMIT_INTERVAL_S
from bench.plot import PlotUnavailable, plot, require_matplotlib
from bench.prefill import Prefill
from bench.profile import summarise
from bench.report import render, to_json
from bench.runner import DEFAULT_MODES, MODES, PEER_MODES, Options, Outcome, run
from bench.steady import SteadySpec
from bench.target import BENCH_DATABASE, TargetError
from service.config.settings import Settings

SMOKE_SIZE = 2000
SWEEP = [250, 1000, 2000, 5000]
T = TypeVar("T")


def _count(text: str) -> int:
    """100000, 100k, 1M, 5m."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _counts(text: str) -> list[int]:
    return [_count(part) for part in text.split(",") if part.strip()]


def _amounts(text: str) -> list[int]:
    """Like _counts, and 0 allowed: `0,1M,10M`."""
    return [0 if part.strip() == "0" else _count(part) for part in text.split(",") if part.strip()]


def _points(args: argparse.Namespace, env: dict[str, str]) -> list[Prefill | None]:
    """The prefill points: the i-th value of each --prefill-* option (one value: every point's)."""
    lists = [args.prefill_products, args.prefill_processed, args.prefill_expired]
    length = max(len(values) for values in lists)
    if any(len(values) not in (1, length) for values in lists):
        raise SystemExit(
            "bench: give each --prefill-* option one value or as many as the longest "
            f"(it has {length})"
        )
    # The service's retention: the expired ids must be past it, the others within it.
    retention = env.get("PROCESSED_EVENT_RETENTION_HOURS") or os.environ.get(
        "PROCESSED_EVENT_RETENTION_HOURS",
        Settings.model_fields["processed_event_retention_hours"].default,
    )
    points: list[Prefill | None] = []
    for i in range(length):
        products, processed, expired = (v[i] if len(v) > 1 else v[0] for v in lists)
        point = Prefill(
            products=products,
            processed=processed,
            expired=expired,
            retention_hours=float(retention),
            stream_products=args.products,
        )
        points.append(point or None)
    return points


def _seconds(text: str) -> list[float]:
    """1,5,30 or 0.5: positive seconds."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not seconds: {text!r}") from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"must be positive seconds: {text!r}")
    return values


def _modes(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [mode for mode in chosen if mode not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown modes {unknown}; choose from {list(MODES)}")
    return chosen


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name.upper(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the benchmark and print a table")
    p.add_argument("--sizes", type=_counts, help="events per stream, e.g. 100k,1M,5M (100k)")
    p.add_argument(
        "--modes",
        type=_modes,
        help=f"any of {','.join(MODES)} (default {','.join(DEFAULT_MODES)}); quix and connect "
        "are the peers (install them with scripts/bench-peers)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_SIZE} events, the --modes given (else {','.join(DEFAULT_MODES)}) and a "
        "5 s steady run; no thresholds",
    )
    p.add_argument(
        "--database",
        help=f"the service's database (default: the run's own, {BENCH_DATABASE}_<pid>, dropped "
        "when the run succeeded; a database named here is kept); each peer writes to "
        "<it>_<peer>",
    )
    p.add_argument("--products", type=int, default=200, help="distinct product ids (200)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=6)
    tuning = p.add_argument_group("service settings (passed to the service's environment)")
    default_batch = Settings.model_fields["batch_max_records"].default
    tuning.add_argument(
        "--batch-max-records",
        type=_count,
        default=default_batch,
        help=f"(the service's default, {default_batch})",
    )
    tuning.add_argument(
        "--batch-sizes",
        type=_counts,
        help=f"several BATCH_MAX_RECORDS to sweep, e.g. {','.join(map(str, SWEEP))}"
        " (with --plot and no --batch-sizes, that sweep is run)",
    )
    tuning.add_argument(
        "--replicas",
        type=_counts,
        default=[1],
        help="service processes in one consumer group, e.g. 1,2 to compare (1)",
    )
    tuning.add_argument("--batch-timeout-ms", type=int, help="BATCH_TIMEOUT_MS")
    tuning.add_argument("--pool-size", type=int, help="POSTGRES_POOL_SIZE")
    tuning.add_argument(
        "--service-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, repeatable",
    )
    prefill = p.add_argument_group(
        "prefill (bench/prefill.py): rows already in the tables before each writing mode "
        "(write-only, naive, service), generated by PostgreSQL; several comma-separated values "
        "make a curve: each writing mode runs once per point, the i-th value of each option "
        "(one value: every point's), e.g. --prefill-products 0,1M,10M,10M "
        "--prefill-processed 0,0,0,30M"
    )
    prefill.add_argument(
        "--prefill-products",
        type=_amounts,
        default=[0],
        help="products beside the stream's, e.g. 1M (0)",
    )
    prefill.add_argument(
        "--prefill-processed",
        type=_amounts,
        default=[0],
        help="processed event ids within PROCESSED_EVENT_RETENTION_HOURS, e.g. 30M (0)",
    )
    prefill.add_argument(
        "--prefill-expired",
        type=_amounts,
        default=[0],
        help="processed event ids older than the retention: the service's purge deletes them "
        "while it runs (0)",
    )
    peers = p.add_argument_group(
        "peer settings (modes quix and connect): each peer runs once per value, a row each"
    )
    peers.add_argument(
        "--quix-commit-intervals",
        type=_seconds,
        default=[QUIX_COMMIT_INTERVAL_S],
        help=f"Quix Streams' commit_interval, seconds, e.g. 1,5,30 ({QUIX_COMMIT_INTERVAL_S:g})",
    )
    peers.add_argument(
        "--connect-batch-sizes",
        type=_counts,
        default=[DEFAULT_BATCH],
        help="the Connect sink's batch.size and consumer.max.poll.records, e.g. 500,2000,5000 "
        f"({DEFAULT_BATCH})",
    )
    naive = p.add_argument_group("naive mode")
    naive.add_argument(
        "--naive-cap",
        type=_count,
        default=50_000,
        help="records the naive consumer handles at most (50k)",
    )
    naive.add_argument(
        "--naive-time-limit", type=float, default=60.0, help="seconds after its first record (60)"
    )
    steady = p.add_argument_group("steady mode (runs when --steady-rate is given)")
    steady.add_argument(
        "--steady-rate",
        type=_counts,
        help="events/s offered, e.g. 5000; several, e.g. 5000,20000, run one after the other",
    )
    steady.add_argument("--duration", type=float, default=60.0, help="seconds measured (60)")
    steady.add_argument("--warmup", type=float, default=2.0, help="seconds not measured (2)")
    steady.add_argument("--poll-interval-ms", type=float, default=20.0, help="(20)")
    steady.add_argument("--steady-linger-ms", type=int, default=5, help="producer linger (5)")
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, help="also write the results as JSON here")
    out.add_argument("--plot", type=Path, help="PNG: throughput vs batch size, steady latency")
    out.add_argument(
        "--profile", type=Path, help="py-spy raw profile of the first service run (needs py-spy)"
    )
    out.add_argument("--log-dir", type=Path, help="child process logs (default: a temp dir)")
    out.add_argument("--keep-topics", action="store_true", help="do not delete bench topics")
    out.add_argument(
        "--no-verify",
        action="store_true",
        help="skip comparing final tables with the oracle (done up to 1M events)",
    )
    out.add_argument("--timeout", type=float, default=3600.0, help="per mode, seconds (3600)")
    return parser


def options_from(args: argparse.Namespace) -> Options:
    env = dict(args.service_env)
    if args.batch_timeout_ms is not None:
        env["BATCH_TIMEOUT_MS"] = str(args.batch_timeout_ms)
    if args.pool_size is not None:
        env["POSTGRES_POOL_SIZE"] = str(args.pool_size)
    batch_sizes = args.batch_sizes or (SWEEP if args.plot else [args.batch_max_records])
    sizes = args.sizes or ([] if args.steady_rate else [100_000])
    modes = args.modes or list(DEFAULT_MODES)
    steady_rates, duration, warmup = args.steady_rate or [], args.duration, args.warmup
    if args.smoke:
        sizes, batch_sizes = [SMOKE_SIZE], [args.batch_max_records]
        steady_rates, duration, warmup = [500], 5.0, 1.0
    steady_specs = [
        SteadySpec(
            rate=rate,
            duration=duration,
            warmup=warmup,
            products=args.products,
            seed=args.seed + 1,
            partitions=args.partitions,
            batch_max_records=args.batch_max_records,
            poll_interval_s=args.poll_interval_ms / 1000,
            linger_ms=args.steady_linger_ms,
            timeout=120.0,
        )
        for rate in steady_rates
    ]
    return Options(
        prefills=_points(args, env),
        sizes=sizes,
        modes=modes,
        batch_sizes=batch_sizes,
        replicas=[1] if args.smoke else args.replicas,
        products=args.products,
        seed=args.seed,
        partitions=args.partitions,
        service_env=env,
        naive_cap=args.naive_cap,
        naive_time_limit=args.naive_time_limit,
        steady=steady_specs,
        verify_limit=0 if args.no_verify else 1_000_000,
        mode_timeout=120.0 if args.smoke else args.timeout,
        keep_topics=args.keep_topics,
        profile=args.profile,
        log_dir=args.log_dir,
        database=args.database,
        quix_commit_intervals=args.quix_commit_intervals,
        connect_batch_sizes=args.connect_batch_sizes,
    )


def _run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a CI timeout): stop children and delete topics as ^C does


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.plot:
            require_matplotlib()
        options = options_from(args)
        for mode in options.modes:
            if mode in PEER_MODES:
                installed().require(mode)
        outcome: Outcome = _run_loop(run(options))
    except (TargetError, PlotUnavailable, PeersMissing) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    print(render(outcome.results, outcome.header), flush=True)
    if options.profile is not None and options.profile.exists():
        print("\n" + "\n".join(summarise(options.profile)))
    if args.json:
        to_json(outcome.results, outcome.meta, args.json)
        print(f"\nresults written to {args.json}")
    if args.plot:
        plot(outcome.results, args.plot)
        print(f"plot written to {args.plot}")
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
