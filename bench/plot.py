"""`--plot out.png`: service throughput vs BATCH_MAX_RECORDS, and steady latency over time.

matplotlib comes with the `bench` extra, which scripts/bootstrap installs.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from bench.report import Result


class PlotUnavailable(RuntimeError):
    pass


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed in this environment; run "
            "scripts/bootstrap (it installs the bench extra) or pip install -e '.[bench]', "
            "or drop --plot"
        ) from None


def plot(results: list[Result], path: Path) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))

    by_size: dict[tuple[int, str], list[Result]] = defaultdict(list)
    for result in results:
        if result.mode == "service" and result.batch_max_records is not None:
            by_size[(result.size, result.stream)].append(result)
    left.set_xscale("log")
    left.set_yscale("log")
    batches: set[int] = set()
    for (size, stream), rows in sorted(by_size.items()):
        rows.sort(key=lambda r: r.batch_max_records or 0)
        xs = [r.batch_max_records or 0 for r in rows]
        batches.update(xs)
        label = f"service, {size:,} events" + ("" if stream == "mixed" else f" [{stream}]")
        left.plot(xs, [r.rate for r in rows], "o-", label=label)
    sizes = {size for size, _ in by_size}
    for result in results:
        if result.mode in ("naive", "consume-only", "quix", "connect") and result.size in sizes:
            left.axhline(result.rate, linestyle=":", linewidth=1, color="grey")
            left.text(
                0.02,
                result.rate,
                f"{result.label}, {result.size:,} events: {result.rate:,.0f}/s",
                transform=left.get_yaxis_transform(),
                fontsize=8,
                va="bottom",
            )
    if batches:
        left.set_xticks(sorted(batches))
        left.set_xticklabels([str(b) for b in sorted(batches)])
        left.minorticks_off()
    left.set_xlabel("BATCH_MAX_RECORDS")
    left.set_ylabel("events/s (catch-up from a full topic)")
    left.set_title("service throughput vs batch size")
    if by_size:
        left.legend(loc="center right")
    else:
        left.text(0.5, 0.5, "no service runs", ha="center", transform=left.transAxes)

    steady = [r for r in results if r.mode == "steady" and r.series.get("latency_ms")]
    for result in steady:
        seconds = result.series["latency_ms"]
        xs = [s["second"] for s in seconds]
        for key, style in (("p50_ms", "-"), ("p99_ms", "--"), ("max_ms", ":")):
            right.plot(xs, [s[key] for s in seconds], style, label=f"{key[:-3]} ({result.label})")
    right.set_xlabel("seconds since the measured phase began (by send time)")
    right.set_ylabel("publish-to-row latency, ms")
    right.set_title("steady-rate latency per second")
    if steady:
        right.legend()
    else:
        right.text(
            0.5, 0.5, "no steady run (use --steady-rate)", ha="center", transform=right.transAxes
        )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
