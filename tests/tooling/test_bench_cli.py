"""The benchmark's command line (bench/__main__.py): what the options become."""

from __future__ import annotations

import pytest

from bench.__main__ import build_parser, options_from
from bench.report import Result
from bench.runner import Options


def _options(*argv: str) -> Options:
    return options_from(build_parser().parse_args(["run", *argv]))


def test_several_steady_rates_run_one_after_the_other_each_labelled_by_its_rate() -> None:
    options = _options("--steady-rate", "5000,20k", "--duration", "30")

    assert [spec.rate for spec in options.steady] == [5000, 20_000]
    assert {spec.duration for spec in options.steady} == {30.0}
    assert options.sizes == []  # a steady run alone publishes no catch-up stream
    result = Result("steady", 600_000, 600_000, 30.0, batch_max_records=5000, offered_rate=20_000)
    assert result.label == "steady 20,000/s (batch 5000)"


def test_the_prefill_options_fill_the_tables_beside_the_streams_products() -> None:
    options = _options(
        "--products", "50000", "--prefill-products", "10M", "--prefill-processed", "30M"
    )

    (prefill,) = options.prefills
    assert prefill is not None
    assert (prefill.products, prefill.processed, prefill.expired) == (10_000_000, 30_000_000, 0)
    assert prefill.stream_products == 50_000  # the placeholders are for the stream's products
    assert prefill.short() == "10M/30M/0"
    assert _options().prefills == [None]  # nothing asked: the tables start empty


def test_several_prefill_values_make_the_points_of_a_curve() -> None:
    options = _options("--prefill-products", "0,1M,10M,10M", "--prefill-processed", "0,0,0,30M")

    shorts = [point.short() if point else None for point in options.prefills]
    assert shorts == [None, "1M/0/0", "10M/0/0", "10M/30M/0"]


def test_prefill_lists_of_different_lengths_are_refused() -> None:
    with pytest.raises(SystemExit, match="one value or as many as the longest"):
        _options("--prefill-products", "0,1M,10M", "--prefill-processed", "0,30M")


def test_write_only_is_a_default_mode() -> None:
    assert "write-only" in _options().modes
