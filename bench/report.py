"""Results: one row per measured run, printed as a table (with ratios) and saved as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Result:
    mode: str  # consume-only | validate-only | naive | service | steady
    size: int  # records on the topic (steady: records offered)
    events: int  # records the measurement covers
    seconds: float  # the time those records took
    batch_max_records: int | None = None
    replicas: int = 1
    startup_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    peak_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)  # JSON and plots only

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 and self.events else math.nan

    @property
    def label(self) -> str:
        if self.mode in ("service", "steady") and self.batch_max_records is not None:
            mode = f"{self.mode} x{self.replicas}" if self.replicas > 1 else self.mode
            return f"{mode} (batch {self.batch_max_records})"
        return self.mode


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


COLUMNS = [
    ("size", 10),
    ("mode", 22),
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
    """For every service row: its rate over naive's, consume-only's and validate-only's, same
    size."""
    out = []
    for service in (r for r in results if r.mode == "service"):
        same = {r.mode: r for r in results if r.size == service.size and r.mode != "service"}
        entry: dict[str, Any] = {"size": service.size, "service": service.label}
        for other in ("naive", "consume-only", "validate-only"):
            if other in same and not math.isnan(same[other].rate) and same[other].rate > 0:
                entry[f"service/{other}"] = service.rate / same[other].rate
        out.append(entry)
    return out


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
            if parts:
                where = f"{entry['size']:,} events, {entry['service']}"
                lines.append(f"ratios ({where}): " + ", ".join(parts))
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
