"""The benchmark's command line (bench/__main__.py): what the options become."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from bench import runner
from bench.__main__ import build_parser, options_from
from bench.modes import Topic
from bench.peers import run as peer_run
from bench.report import Result, side_by_side
from bench.runner import Options
from bench.target import Target


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


def test_each_peer_runs_at_its_own_default_setting_unless_told() -> None:
    options = _options("--modes", "quix,connect")

    assert options.quix_commit_intervals == [5.0]  # Quix Streams' own default
    assert options.connect_batch_sizes == [2000]


def test_peer_setting_lists_are_parsed_and_nonsense_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = _options("--quix-commit-intervals", "0.5,5,30", "--connect-batch-sizes", "500,5k")

    assert options.quix_commit_intervals == [0.5, 5.0, 30.0]
    assert options.connect_batch_sizes == [500, 5000]
    for bad in (("--quix-commit-intervals", "0,5"), ("--connect-batch-sizes", "big")):
        with pytest.raises(SystemExit) as exit:
            _options(*bad)
        assert exit.value.code == 2
        assert bad[0] in capsys.readouterr().err


async def test_each_peer_setting_is_a_row_of_its_own_and_the_fastest_is_the_best_of_any(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One run per value, each given its value and labelled with it; the side-by-side table's
    fastest peer is the best row of any setting. The peers themselves are not started: each
    fake stands in for one run (rate = its value, so the largest setting is the fastest)."""
    options = _options(
        *("--modes", "quix,connect"),
        *("--quix-commit-intervals", "1,30", "--connect-batch-sizes", "500,5000"),
    )
    given: list[tuple[str, float]] = []

    async def quix(topic: Topic, commit_interval: float, timeout: float) -> Result:
        given.append(("quix", commit_interval))
        setting = peer_run.quix_setting(commit_interval)
        return Result("quix", 2000, 1000, 1000 / commit_interval, stream="upserts", setting=setting)

    async def kafka_connect(topic: Topic, batch: int, timeout: float) -> Result:
        given.append(("connect", batch))
        setting = peer_run.connect_setting(batch)
        return Result("connect", 2000, 1000, 1000 / batch, stream="upserts", setting=setting)

    async def idle(seconds: float) -> float:
        return 0.0

    monkeypatch.setattr(peer_run, "quix", quix)
    monkeypatch.setattr(peer_run, "kafka_connect", kafka_connect)
    monkeypatch.setattr(runner, "host_busy", idle)
    topic = Topic(cast(Target, None), "r", "t", 2000, 6, {0: 1000}, tmp_path, stream="upserts")
    results: list[Result] = []
    failed: list[str] = []
    for mode in options.modes:
        await runner._run_mode(topic, mode, options, results, failed)

    assert not failed
    assert given == [("quix", 1.0), ("quix", 30.0), ("connect", 500), ("connect", 5000)]
    assert [r.label for r in results] == [
        "quix (commit 1 s) [upserts]",
        "quix (commit 30 s) [upserts]",
        "connect (batch 500) [upserts]",
        "connect (batch 5000) [upserts]",
    ]
    text = "\n".join(side_by_side(results))
    assert "fastest peer: connect (batch 5000) [upserts] (5,000 events/s)" in text
    slower = next(line for line in text.splitlines() if "(commit 30 s)" in line)
    assert slower.split("[upserts]")[1].split()[:2] == ["30", "0.01"]  # 30/s over 5,000/s
