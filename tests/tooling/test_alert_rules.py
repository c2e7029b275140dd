"""deploy/prometheus/alerts.yml: Prometheus's own checker accepts it, its unit tests
(deploy/prometheus/alerts.test.yml, `promtool test rules`) pass and cover every alert firing and
staying quiet, every rule waits (`for:`), has a severity and a runbook, and alerts only on
metrics the service serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from ruamel.yaml import YAML

from service.core.domain import Reason
from service.health.collector import HealthMetrics
from service.health.position_watch import WatchMetrics
from service.health.progress import ProgressTracker
from service.observability.metrics import Metrics
from service.positions.guard import PositionMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
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
        assert DURATION.match(rule["for"]), rule["alert"]  # none fires on one evaluation
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert all(isinstance(v, str) and v for v in rule["annotations"].values())


def runbook_path(alert: str) -> str:
    """InventorySinkDeadLettersRising -> docs/runbooks/inventory-sink-dead-letters-rising.md"""
    return "docs/runbooks/" + re.sub(r"(?<!^)(?=[A-Z])", "-", alert).lower() + ".md"


def test_every_runbook_url_is_the_alerts_runbook_in_this_repository() -> None:
    """A path relative to the repository: it names no host, and Alertmanager templates prefix
    it with wherever the repository is browsed."""
    for rule in rules():
        assert rule["annotations"]["runbook_url"] == runbook_path(rule["alert"]), rule["alert"]


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


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, (
        "promtool is not installed: install Debian's prometheus package "
        "(`scripts/local-stack prometheus`, or `apt-get install prometheus`), then rerun"
    )
    return subprocess.run(
        [path, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_see_every_alert_fire_and_stay_quiet() -> None:
    data = YAML(typ="safe").load(RULE_TESTS.read_text())
    assert data["rule_files"] == ["alerts.yml"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in data["tests"]:
        for check in case["alert_rule_test"]:
            expected = check["exp_alerts"]
            (fired if expected else quiet).add(check["alertname"])
            for alert in expected:  # what Alertmanager receives is checked in full
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
    names = {rule["alert"] for rule in rules()}
    assert names - fired == set(), "add a case where these fire"
    assert names - quiet == set(), "add a case where these stay quiet"


def test_every_alert_has_its_runbook_page_indexed_in_the_runbooks_readme() -> None:
    index = (ROOT / "docs" / "runbooks" / "README.md").read_text()
    for rule in rules():
        page = ROOT / rule["annotations"]["runbook_url"]
        assert page.is_file(), f"write {page.relative_to(ROOT)}"
        text = page.read_text()
        assert text.startswith(f"# {rule['alert']}\n"), page.name
        sections = re.findall(r"^## (.+)$", text, re.M)
        assert sections == ["Symptom", "Likely causes", "What to run", "Confirm the fix"], page
        assert f"**Severity:** {rule['labels']['severity']}." in text, page.name
        assert f"`{rule['alert']}` | {rule['labels']['severity']} |" in index, rule["alert"]
        assert f"]({page.name})" in index, rule["alert"]
    pages = {path.name for path in (ROOT / "docs" / "runbooks").glob("*.md")}
    assert pages == {"README.md"} | {
        Path(rule["annotations"]["runbook_url"]).name for rule in rules()
    }


def test_the_dead_letters_runbook_and_the_metrics_reference_name_every_reason() -> None:
    for page in (
        "docs/runbooks/inventory-sink-dead-letters-rising.md",
        "docs/reference/metrics.md",
    ):
        text = (ROOT / page).read_text()
        missing = [reason.value for reason in Reason if f"`{reason.value}`" not in text]
        assert not missing, f"add the dead-letter reasons {missing} to {page}"
