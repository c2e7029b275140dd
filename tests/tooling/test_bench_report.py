"""The benchmark's report: the ceiling (bench/report.py)."""

from __future__ import annotations

from bench.report import Result, ceiling, ceiling_fraction, ratios, render


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
