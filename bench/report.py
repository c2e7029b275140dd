"""Results: one row per measured run, printed as a table (with ratios) and saved as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Result:
    # consume-only | validate-only | write-only | naive | service | quix | connect | steady
    mode: str
    size: int  # records of the mixed stream the run's topics come from (steady: offered)
    events: int  # records the measurement covers
    seconds: float  # the time those records took
    batch_max_records: int | None = None
    replicas: int = 1
    startup_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    peak_rss_mb: float | None = None
    stream: str = "mixed"  # mixed | upserts (the mixed stream's valid upserts, for the peers)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU-seconds by process while timed
    # PostgreSQL's counters over the whole run (bench/pg_cost.py), and the events they cover.
    pg: dict[str, float] = field(default_factory=dict)
    pg_events: int = 0
    prefill: str = ""  # what the tables held before the mode (bench/prefill.py)
    offered_rate: int | None = None  # steady: the events/s the publisher offered
    setting: str = ""  # a peer's setting, e.g. "commit 1 s" (Quix), "batch 5000" (Connect)
    notes: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)  # JSON and plots only

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 and self.events else math.nan

    @property
    def label(self) -> str:
        mode = self.mode
        if self.mode in ("service", "steady", "write-only") and self.batch_max_records is not None:
            mode = f"{self.mode} x{self.replicas}" if self.replicas > 1 else self.mode
            if self.offered_rate is not None:
                mode = f"{mode} {self.offered_rate:,}/s"
            mode = f"{mode} (batch {self.batch_max_records})"
        if self.setting:
            mode = f"{mode} ({self.setting})"
        if self.prefill:
            mode = f"{mode} @{self.prefill}"
        return mode if self.stream == "mixed" else f"{mode} [{self.stream}]"

    def pg_per_event(self) -> dict[str, float]:
        """PostgreSQL's counters (bench/pg_cost.py) per event of the stream."""
        if not self.pg or not self.pg_events:
            return {}
        return {name: value / self.pg_events for name, value in self.pg.items()}

    def cpu_per_1k(self) -> dict[str, float]:
        """CPU-seconds per 1,000 events, by process group (and their total)."""
        if not self.cpu_s or not self.events:
            return {}
        per = {name: 1000 * seconds / self.events for name, seconds in self.cpu_s.items()}
        per["total"] = sum(v for k, v in per.items() if k != "host")
        return per


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


COLUMNS = [
    ("size", 10),
    ("mode", 40),
    ("events", 10),
    ("seconds", 9),
    ("events/s", 10),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("max ms", 8),
    ("peak RSS MB", 12),
    ("start-up s", 11),
]


def _row(result: Result) -> list[str]:
    return [
        f"{result.size:,}",
        result.label,
        f"{result.events:,}",
        _num(result.seconds, 2),
        _num(result.rate, 0),
        _num(result.p50_ms),
        _num(result.p99_ms),
        _num(result.max_ms),
        _num(result.peak_rss_mb),
        _num(result.startup_s, 2),
    ]


def ratios(results: list[Result]) -> list[dict[str, Any]]:
    """For every service row: its rate over naive's, consume-only's, validate-only's and
    write-only's (same size and stream), and its ceiling fraction."""
    out = []
    for service in (r for r in results if r.mode == "service"):
        same = {
            r.mode: r
            for r in results
            if r.size == service.size and r.stream == service.stream and r.mode != "service"
        }
        writes = floor_of(results, service, "write-only")
        if writes is not None:
            same["write-only"] = writes
        entry: dict[str, Any] = {"size": service.size, "service": service.label}
        for other in ("naive", "consume-only", "validate-only", "write-only"):
            if other in same and not math.isnan(same[other].rate) and same[other].rate > 0:
                entry[f"service/{other}"] = service.rate / same[other].rate
        fraction = ceiling_fraction(results, service)
        if fraction is not None:
            entry["ceiling fraction"] = fraction
        out.append(entry)
    return out


def floor_of(results: list[Result], service: Result, mode: str) -> Result | None:
    """The `mode` row (validate-only or write-only) measured on the service row's stream; of
    several write-only rows (a batch sweep, prefill points), the one at the service's batch
    size and prefill."""
    rows = [
        r
        for r in results
        if r.mode == mode
        and r.size == service.size
        and r.stream == service.stream
        and not math.isnan(r.rate)
    ]
    same_batch = [r for r in rows if r.batch_max_records == service.batch_max_records]
    same_point = [r for r in same_batch if r.prefill == service.prefill]
    return (same_point or same_batch or rows or [None])[-1]


def ceiling_fraction(results: list[Result], service: Result) -> float | None:
    """The service's rate over the lower of its two floors: validate-only (Kafka and decoding,
    no writes) and write-only (the write path's transactions, no Kafka). A service that
    overlapped the two perfectly on enough cores would reach 1."""
    floors = [floor_of(results, service, mode) for mode in ("validate-only", "write-only")]
    if any(f is None for f in floors) or math.isnan(service.rate):
        return None
    return service.rate / min(f.rate for f in floors if f is not None)


CEILING_COLUMNS = [
    ("size", 10),
    ("service", 40),
    ("events/s", 10),
    ("validate-only", 13),
    ("write-only", 10),
    ("floor", 10),
    ("ceiling fraction", 16),
]


def ceiling(results: list[Result]) -> list[str]:
    """One line per service row that has both floors beside it."""
    lines: list[str] = []
    for service in (r for r in results if r.mode == "service"):
        fraction = ceiling_fraction(results, service)
        validate = floor_of(results, service, "validate-only")
        writes = floor_of(results, service, "write-only")
        if fraction is None or validate is None or writes is None:
            continue
        if not lines:
            lines += [
                "",
                "ceiling: the service's rate as a fraction of the lower floor, "
                "min(validate-only, write-only), same stream",
                "  ".join(name.rjust(width) for name, width in CEILING_COLUMNS),
                "  ".join("-" * width for _, width in CEILING_COLUMNS),
            ]
        cells = [
            f"{service.size:,}",
            service.label,
            _num(service.rate, 0),
            _num(validate.rate, 0),
            _num(writes.rate, 0),
            _num(min(validate.rate, writes.rate), 0),
            _num(fraction, 3),
        ]
        lines.append(
            "  ".join(c.rjust(w) for c, (_, w) in zip(cells, CEILING_COLUMNS, strict=True))
        )
    return lines


PEERS = ("quix", "connect")
SYSTEMS = ("consume-only", "validate-only", "write-only", "naive", "service", *PEERS)
CPU_GROUPS = ("consumer", "pg backends", "pg other", "kafka", "total", "host")
SIDE_COLUMNS = [
    ("system", 32),
    ("events/s", 10),
    ("x fastest peer", 14),
    ("x consume-only", 14),
    *((name, 11) for name in CPU_GROUPS),
    ("peak RSS MB", 11),
    ("start-up s", 10),
]


def _rate_ratio(rate: float, other: Result | None) -> float:
    if other is None or math.isnan(other.rate) or other.rate <= 0:
        return math.nan
    return rate / other.rate


def side_by_side(results: list[Result]) -> list[str]:
    """Per size, when peers ran: every system's rate, its ratio to the fastest peer (on the
    upserts stream) and to consume-only (same stream), and its CPU-seconds per 1,000 events by
    process."""
    lines: list[str] = []
    for size in sorted({r.size for r in results if r.mode in PEERS}):
        rows = [r for r in results if r.size == size and r.mode in SYSTEMS]
        peers = [r for r in rows if r.mode in PEERS and not math.isnan(r.rate)]
        fastest = max(peers, key=lambda r: r.rate, default=None)
        upserts = next((r.events for r in rows if r.stream == "upserts"), 0)
        lines += [
            "",
            f"side by side, {size:,}-event stream ({upserts:,} of them valid upserts, the peers' "
            "stream); CPU-seconds per 1,000 events by process while timed",
            "  ".join(name.rjust(width) for name, width in SIDE_COLUMNS),
            "  ".join("-" * width for _, width in SIDE_COLUMNS),
        ]
        for result in sorted(rows, key=lambda r: (r.stream != "upserts", SYSTEMS.index(r.mode))):
            consume = next(
                (r for r in rows if r.mode == "consume-only" and r.stream == result.stream), None
            )
            per = result.cpu_per_1k()
            cells = [
                result.label,
                _num(result.rate, 0),
                _num(_rate_ratio(result.rate, fastest), 2),
                _num(_rate_ratio(result.rate, consume), 3),
                *(_num(per.get(name), 3) if per else "-" for name in CPU_GROUPS),
                _num(result.peak_rss_mb),
                _num(result.startup_s, 2),
            ]
            lines.append(
                "  ".join(c.rjust(w) for c, (_, w) in zip(cells, SIDE_COLUMNS, strict=True))
            )
        if fastest is not None:
            lines.append(f"fastest peer: {fastest.label} ({fastest.rate:,.0f} events/s)")
        lines.append(
            "consumer = the system's own process tree (consume-/validate-only: the bench "
            "process); pg backends = the PostgreSQL backends of its database; pg other = "
            "PostgreSQL's background processes (WAL writer, checkpointer, autovacuum; shared); "
            "kafka = the broker (shared); host = every CPU of the host"
        )
    return lines


COST_COLUMNS = [
    ("size", 10),
    ("mode", 40),
    ("events/s", 9),
    ("x first", 7),
    ("consumer us", 11),
    ("pg back us", 10),
    ("pg other us", 11),
    ("kafka us", 8),
    ("total us", 8),
    ("WAL B", 7),
    ("FPI/1k", 7),
    ("buf hits", 8),
    ("buf reads", 9),
    ("products rd", 11),
    ("processed rd", 12),
]


def _curve_key(result: Result) -> tuple[str, int, str, int | None, int]:
    """The rows of one curve: the same mode on the same stream, at other prefill points."""
    return (result.mode, result.size, result.stream, result.batch_max_records, result.replicas)


def cost(results: list[Result]) -> list[str]:
    """Per row that wrote to PostgreSQL: the cost per event of the stream. CPU while timed
    (bench/cpu.py), PostgreSQL's counters over the whole run (bench/pg_cost.py)."""
    rows = [r for r in results if r.pg and r.pg_events]
    if not rows:
        return []
    lines = [
        "",
        "cost per event: CPU microseconds by process while timed; WAL bytes, full-page images "
        "per 1,000 events, shared-buffer hits and reads (blocks) over the whole run",
        "  ".join(name.rjust(width) for name, width in COST_COLUMNS),
        "  ".join("-" * width for _, width in COST_COLUMNS),
    ]
    firsts: dict[tuple[str, int, str, int | None, int], Result] = {}
    for result in rows:
        first = firsts.setdefault(_curve_key(result), result)
        per = {name: 1000 * value for name, value in result.cpu_per_1k().items()}  # us/event
        pg = result.pg_per_event()
        cells = [
            f"{result.size:,}",
            result.label,
            _num(result.rate, 0),
            _num(_rate_ratio(result.rate, first), 2) if first is not result else "-",
            _num(per.get("consumer"), 1),
            _num(per.get("pg backends"), 1),
            _num(per.get("pg other"), 1),
            _num(per.get("kafka"), 1),
            _num(per.get("total"), 1),
            _num(pg.get("wal_bytes"), 0),
            _num(1000 * pg["wal_fpi"] if "wal_fpi" in pg else None, 1),
            _num(pg.get("blks_hit"), 1),
            _num(pg.get("blks_read"), 2),
            _num(pg.get("products reads"), 2),
            _num(pg.get("processed_events reads"), 2),
        ]
        lines.append("  ".join(c.rjust(w) for c, (_, w) in zip(cells, COST_COLUMNS, strict=True)))
    lines.append(
        "@ = the prefill: products/ids within retention/expired ids in the tables before the "
        "mode; "
        "x first = the rate over the same mode's at the first prefill point; "
        "WAL and FPI are the whole server's (other databases' writes count too); hits and "
        "reads are the bench database's (pg_stat_database; products rd and processed rd: heap "
        "and index reads of each table, pg_statio_user_tables); pg_stat_statements is not used "
        "(it needs shared_preload_libraries and a restart)"
    )
    return lines


def render(results: list[Result], header: list[str]) -> str:
    lines = [*header, ""]
    lines.append("  ".join(name.rjust(width) for name, width in COLUMNS))
    lines.append("  ".join("-" * width for _, width in COLUMNS))
    for result in results:
        cells = _row(result)
        lines.append(
            "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))
        )
    found = ratios(results)
    if found:
        lines.append("")
        for entry in found:
            parts = [f"{name} = {value:.2f}x" for name, value in entry.items() if "/" in name]
            if "ceiling fraction" in entry:
                parts.append(f"ceiling fraction = {entry['ceiling fraction']:.3f}")
            if parts:
                where = f"{entry['size']:,} events, {entry['service']}"
                lines.append(f"ratios ({where}): " + ", ".join(parts))
    lines += ceiling(results)
    lines += cost(results)
    lines += side_by_side(results)
    notes = [(r, note) for r in results for note in r.notes]
    if notes:
        lines.append("")
        lines.append("notes:")
        for result, note in notes:
            lines.append(f"  [{result.size:,} {result.label}] {note}")
    return "\n".join(lines)


def to_json(results: list[Result], meta: dict[str, Any], path: Path) -> None:
    rows = []
    for result in results:
        row = asdict(result)
        row["rate"] = None if math.isnan(result.rate) else result.rate
        row["label"] = result.label
        rows.append(row)
    document = {**meta, "results": rows, "ratios": ratios(results)}
    for row, result in zip(rows, results, strict=True):
        row["cpu_per_1k"] = result.cpu_per_1k()
        row["pg_per_event"] = result.pg_per_event()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
