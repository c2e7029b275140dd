"""The benchmark's report: the ceiling and the cost per event (bench/report.py)."""

from __future__ import annotations

import re

from bench.prefill import Prefill
from bench.report import Result, ceiling, ceiling_fraction, cost, ratios, render


def _rows() -> list[Result]:
    return [
        Result("validate-only", 1000, 1000, 1.0),  # 1,000/s
        Result("write-only", 1000, 1000, 2.0, batch_max_records=500),  # 500/s
        Result("write-only", 1000, 1000, 4.0, batch_max_records=5000),  # 250/s
        Result("service", 1000, 1000, 5.0, batch_max_records=500),  # 200/s
        Result("validate-only", 1000, 100, 0.1, stream="upserts"),  # another stream
    ]


def test_the_ceiling_fraction_is_over_the_lower_floor_at_the_same_batch_size() -> None:
    rows = _rows()
    service = rows[3]

    assert ceiling_fraction(rows, service) == 200 / 500
    assert ratios(rows)[0]["service/write-only"] == 200 / 500
    assert ratios(rows)[0]["ceiling fraction"] == 200 / 500
    text = "\n".join(ceiling(rows))
    assert "service (batch 500)" in text and "0.400" in text
    assert "ceiling fraction = 0.400" in render(rows, [])


def test_without_both_floors_there_is_no_ceiling() -> None:
    rows = [r for r in _rows() if r.mode != "write-only"]

    assert ceiling_fraction(rows, rows[1]) is None
    assert ceiling(rows) == []
    assert "ceiling fraction" not in ratios(rows)[0]


def _table(lines: list[str]) -> list[dict[str, str]]:
    """The rows of a printed table, by column name (cells are at least two spaces apart)."""
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("size"))
    names = re.split(r"\s{2,}", lines[header].strip())
    rows = []
    for line in lines[header + 2 :]:
        if not re.match(r"\s*[\d,]+\s{2,}", line):
            break
        rows.append(dict(zip(names, re.split(r"\s{2,}", line.strip()), strict=True)))
    return rows


def test_the_cost_is_per_event_of_the_stream_with_each_point_against_the_first() -> None:
    empty = Result("service", 1000, 1000, 0.5, batch_max_records=500)
    empty.pg, empty.pg_events = {"wal_bytes": 200_000.0}, 1000
    service = Result("service", 1000, 900, 1.0, batch_max_records=500)
    service.cpu_s = {"consumer": 0.02, "pg backends": 0.01}
    service.pg = {"wal_bytes": 400_000.0, "wal_fpi": 10.0, "blks_hit": 8000.0, "blks_read": 50.0}
    service.pg_events = 1000  # the whole run's counters cover the whole stream
    service.prefill = Prefill(products=10_000_000, processed=30_000_000).short()

    first, curve = _table(cost([empty, service]))

    assert first["mode"] == "service (batch 500)" and first["x first"] == "-"
    assert curve["mode"] == "service (batch 500) @10M/30M/0"
    assert curve["x first"] == "0.45"  # 900/s against 2,000/s with empty tables
    assert curve["consumer us"] == "22.2"  # 0.02 s over the 900 timed events
    assert (curve["WAL B"], curve["FPI/1k"], curve["buf hits"], curve["buf reads"]) == (
        "400",
        "10.0",
        "8.0",
        "0.05",
    )
