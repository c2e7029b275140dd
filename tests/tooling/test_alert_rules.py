"""deploy/prometheus/alerts.yml has the shape Prometheus loads (promtool is not at hand) and
alerts only on metrics the service serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from ruamel.yaml import YAML

from service.health.collector import HealthMetrics
from service.health.position_watch import WatchMetrics
from service.health.progress import ProgressTracker
from service.observability.metrics import Metrics
from service.positions.guard import PositionMetrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# Served by the partition guard (stored positions vs the log), not by
# service/observability/metrics.py.
GUARD_METRICS = {"inventory_sink_partition_stopped", "inventory_sink_offsets_lost_total"}
TEMPLATE = re.compile(r"\{\{(.*?)\}\}")


def load() -> dict[str, Any]:
    data = YAML(typ="safe").load(RULES.read_text())
    assert isinstance(data, dict)
    return data


def rules() -> list[dict[str, Any]]:
    return [rule for group in load()["groups"] for rule in group["rules"]]


def served_metric_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    HealthMetrics(registry, ProgressTracker())
    PositionMetrics(registry)
    WatchMetrics(registry)
    names = set()
    for family in registry.collect():
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
        }.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_the_file_is_a_list_of_named_groups_of_alerting_rules() -> None:
    data = load()
    assert set(data) == {"groups"}
    assert [group["name"] for group in data["groups"]] == ["inventory-sink"]
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"], group["name"]
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert re.fullmatch(r"InventorySink[A-Z][A-Za-z]+", rule["alert"]), rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert all(isinstance(v, str) and v for v in rule["annotations"].values())


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))


def test_expressions_are_balanced_and_templates_only_use_labels_and_value() -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    for rule in rules():
        stack: list[str] = []
        for char in rule["expr"]:
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack and stack.pop() == pairs[char], rule["alert"]
        assert not stack, rule["alert"]
        for text in rule["annotations"].values():
            for template in TEMPLATE.findall(text):
                assert re.fullmatch(
                    r"\s*\$(labels\.[a-z_]+|value)(\s*\|\s*[a-zA-Z]+)?\s*", template
                ), (rule["alert"], template)


def test_every_metric_an_alert_uses_is_served_by_the_service() -> None:
    used = {name for rule in rules() for name in re.findall(r"inventory_sink_\w+", rule["expr"])}
    served = served_metric_names()
    assert used - served == set()
    # The operator's essentials each have an alert.
    assert {
        "inventory_sink_ready",
        "inventory_sink_partition_lag",
        "inventory_sink_seconds_since_progress",
        "inventory_sink_dead_letters_total",
        "inventory_sink_batch_retries_total",
    } <= used
    assert used >= GUARD_METRICS
