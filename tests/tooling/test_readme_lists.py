"""The lists stay complete: every metric the service defines (in docs/reference/metrics.md, and
no metric it does not define in the README), and every package of service/ (in Layout's map)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\binventory_sink_[a-z_]+[a-z]\b")


def defined() -> set[str]:
    """Every metric name written as a string literal in service/ (Counter, Gauge, Histogram,
    collectors: each defines its metrics by such a literal)."""
    found = set()
    for path in (ROOT / "service").rglob("*.py"):
        found.update(re.findall(r"[\"'](inventory_sink_[a-z_]+)[\"']", path.read_text("utf-8")))
    return found


def test_the_search_finds_the_metrics() -> None:
    assert {"inventory_sink_events_total", "inventory_sink_partition_lag"} <= defined()


def test_the_metrics_reference_names_every_metric_the_service_defines() -> None:
    """(Types and labels: tests/unit/observability/test_metric_reference.py.)"""
    reference = (ROOT / "docs" / "reference" / "metrics.md").read_text("utf-8")
    missing = defined() - set(NAME.findall(reference))
    assert not missing, f"add to docs/reference/metrics.md: {sorted(missing)}"


def test_the_readme_names_no_metric_the_service_does_not_define() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    unknown = set(NAME.findall(readme)) - defined()
    assert not unknown, f"README.md names metrics nothing defines: {sorted(unknown)}"


def test_the_layout_map_names_every_package_and_top_level_module_of_the_service() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    layout = readme[readme.index("\n## Layout") :]
    service = ROOT / "service"
    parts = {f"service/{path.parent.name}/" for path in service.glob("*/__init__.py")} | {
        f"service/{path.name}" for path in service.glob("*.py") if path.name != "__init__.py"
    }
    assert {"service/core/", "service/app.py"} <= parts
    missing = {part for part in parts if f"`{part}`" not in layout}
    assert not missing, f"add to README.md's Layout map: {sorted(missing)}"


def test_the_top_level_holds_only_the_composition_root_and_the_entry_point() -> None:
    """Every other module lives in the package of its job (README, Layout)."""
    top = {path.name for path in (ROOT / "service").glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "app.py"}, sorted(top)
