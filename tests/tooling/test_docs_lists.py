"""The docs' lists stay complete: every metric the service defines is named in docs/ (and no
page names a metric nothing defines), and every package of service/ is on the package map
(docs/explanation/architecture.md, Layout)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\binventory_sink_[a-z_]+[a-z]\b")
ARCHITECTURE = ROOT / "docs" / "explanation" / "architecture.md"


def defined() -> set[str]:
    """Every metric name written as a string literal in service/ (Counter, Gauge, Histogram,
    collectors: each defines its metrics by such a literal)."""
    found = set()
    for path in (ROOT / "service").rglob("*.py"):
        found.update(re.findall(r"[\"'](inventory_sink_[a-z_]+)[\"']", path.read_text("utf-8")))
    return found


def pages() -> dict[Path, str]:
    """README.md, MIGRATIONS.md and every page under docs/."""
    paths = [ROOT / "README.md", ROOT / "MIGRATIONS.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {path: path.read_text("utf-8") for path in paths}


def test_the_search_finds_the_metrics() -> None:
    assert {"inventory_sink_events_total", "inventory_sink_partition_lag"} <= defined()


def test_the_docs_name_every_metric_the_service_defines() -> None:
    named = set().union(*(NAME.findall(text) for text in pages().values()))
    missing = defined() - named
    assert not missing, f"document in docs/reference/metrics.md: {sorted(missing)}"


def test_no_page_names_a_metric_the_service_does_not_define() -> None:
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path, text in pages().items()
        for name in set(NAME.findall(text)) - defined()
    }
    assert not unknown, f"pages name metrics nothing defines: {sorted(unknown)}"


def test_the_layout_map_names_every_package_and_top_level_module_of_the_service() -> None:
    text = ARCHITECTURE.read_text("utf-8")
    layout = text[text.index("\n## Layout") :]
    service = ROOT / "service"
    parts = {f"service/{path.parent.name}/" for path in service.glob("*/__init__.py")} | {
        f"service/{path.name}" for path in service.glob("*.py") if path.name != "__init__.py"
    }
    assert {"service/core/", "service/app.py"} <= parts
    missing = {part for part in parts if f"`{part}`" not in layout}
    assert not missing, f"add to the Layout map of {ARCHITECTURE.name}: {sorted(missing)}"


def test_the_top_level_holds_only_the_composition_root_and_the_entry_point() -> None:
    """Every other module lives in the package of its job (docs/explanation/architecture.md,
    Layout)."""
    top = {path.name for path in (ROOT / "service").glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "app.py"}, sorted(top)
