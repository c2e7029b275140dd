"""docs/reference/metrics.md lists exactly the metrics the service serves at /metrics, with
their types and labels: read from the application `python -m service run` serves, so the page
cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from service.health.collector import HealthMetrics, ProgressCollector
from service.health.position_watch import WatchMetrics
from service.health.progress import ProgressTracker
from service.observability.metrics import Metrics
from service.positions.guard import PositionMetrics
from tests.unit.observability.test_metrics import scrape

PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "metrics.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| ([a-z]+) \|([^|]*)\| (.+) \|$", re.M)


def documented() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the page's tables."""
    rows = {}
    for name, kind, labels, meaning in ROW.findall(PAGE.read_text()):
        assert name not in rows, f"{name} is listed twice"
        assert meaning.strip(), name
        rows[name] = (kind, set(re.findall(r"`([a-z_]+)`", labels)))
    return rows


def served_types(text: str) -> dict[str, str]:
    """name -> type of every family in a scrape, without prometheus_client's `_created`."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return {name: kind for name, kind in types.items() if not name.endswith("_created")}


def label_names() -> dict[str, set[str]]:
    """The label names each metric is declared with (a labelled series appears only at its
    first value, so a scrape of a fresh process cannot show them all)."""
    registry = CollectorRegistry(auto_describe=True)
    owners: list[object] = [
        Metrics(registry),
        HealthMetrics(registry, ProgressTracker()),
        PositionMetrics(registry),
        WatchMetrics(registry),
    ]
    declared: dict[str, set[str]] = {}
    for owner in owners:
        for metric in vars(owner).values():
            if isinstance(metric, MetricWrapperBase):
                name = metric._name + {"counter": "_total"}.get(metric._type, "")
                declared[name] = set(metric._labelnames)
    for family in ProgressCollector(ProgressTracker()).describe():
        declared[family.name] = set(family._labelnames)  # type: ignore[attr-defined]
    return declared


async def test_the_page_lists_every_served_metric_with_its_type() -> None:
    served = served_types(await scrape())
    listed = {name: kind for name, (kind, _) in documented().items()}
    missing = sorted(set(served) - set(listed))
    assert not missing, f"add to docs/reference/metrics.md: {missing}"
    unknown = sorted(set(listed) - set(served))
    assert not unknown, f"docs/reference/metrics.md lists metrics not served: {unknown}"
    assert listed == served


async def test_the_labels_on_the_page_are_those_of_the_served_series() -> None:
    text = await scrape()
    rows = documented()
    for name, (_, labels) in rows.items():
        for sample in re.findall(rf"^{name}(?:_bucket|_sum|_count)?\{{([^}}]*)\}}", text, re.M):
            assert set(re.findall(r'(\w+)="', sample)) <= labels | {"le"}, name
    for name, labels in label_names().items():
        expected = labels | ({"le"} if rows[name][0] == "histogram" else set())
        assert rows[name][1] == expected, name
    assert rows["inventory_sink_build_info"][1] == {"version", "python", "contract"}
