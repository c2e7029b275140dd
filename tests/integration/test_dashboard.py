"""deploy/grafana/inventory-sink.json against a real Prometheus (Debian's `prometheus`
binary, on 127.0.0.1) that scrapes a running consumer every second: every query of every panel
returns data, every metric a panel names is one the service exports, and Prometheus loads and
evaluates every rule of deploy/prometheus/alerts.yml."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from service.kafka.topics import ensure_topics
from testbed.events import StreamSpec, generate_stream
from testbed.publish import publish
from tests.conftest import make_settings
from tests.support.consumer import ConsumerProcess
from tests.support.scrape import get
from tests.support.services import PostgresEndpoint

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "inventory-sink.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "inventory-sink"
# What Grafana puts in for the dashboard's variables: every job and instance ("All"), and a
# rate window that spans the whole test.
VARIABLES = {"$__rate_interval": "1m", "$job": JOB, "$instance": ".*"}
METRIC = re.compile(r"\b((?:inventory_sink|process|python)_[a-z_]+)\b")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Prometheus:
    """A Prometheus server of its own, scraping `target` every second and evaluating the
    alert rules every second."""

    def __init__(self, target: str, directory: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, (
            "prometheus is not installed: install Debian's prometheus package "
            "(`scripts/local-stack prometheus`, or `apt-get install prometheus`), then rerun"
        )
        config = directory / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.tail()}"
            try:
                if (await get(f"{self.url}/-/ready"))[0] == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        pytest.fail(f"prometheus never became ready:\n{self.tail()}")

    async def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        status, body = await get(f"{self.url}/api/v1/{path}?{query}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (path, params, body)
        return answer["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = await self.query(expr)
            if result:
                return result
            await asyncio.sleep(0.5)
        targets = [
            (target["scrapeUrl"], target["health"], target["lastError"])
            for target in (await self.api("targets"))["activeTargets"]
        ]
        pytest.fail(f"{expr} stayed empty for {timeout:g}s; targets {targets}\n{self.tail()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def started(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> Iterator[tuple[ConsumerProcess, Prometheus]]:
    settings = make_settings(pg, kafka, names, http_host="127.0.0.1")
    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    prometheus: Prometheus | None = None
    try:
        target = consumer.http_url().removeprefix("http://")
        prometheus = Prometheus(target, tmp_path)
        yield consumer, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        consumer.kill()


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a dashboard variable this test does not know: {expr}"
    return expr


def family(name: str) -> str:
    """The metric family a series name belongs to (Prometheus scrapes OpenMetrics, whose
    metadata names a counter without `_total`)."""
    return re.sub(r"_(bucket|sum|count|total)$", "", name)


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [entry["name"] for entry in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["uid"] == "inventory-sink" and dashboard["id"] is None
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in panels():
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == source for target in panel["targets"])
        assert panel["description"], panel["title"]
    titles = [panel["title"] for panel in panels()]
    assert len(titles) == len(set(titles))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


async def test_every_panel_query_returns_data_from_prometheus_scraping_the_consumer(
    started: tuple[ConsumerProcess, Prometheus], kafka: str, names: dict[str, str], pg: Any
) -> None:
    consumer, prometheus = started
    await ensure_topics(make_settings(pg, kafka, names))
    await prometheus.ready()
    await prometheus.wait_for(f'up{{job="{JOB}"}} == 1')

    # Valid events of every type, duplicates, stale versions and bad records of every kind.
    stream = generate_stream(StreamSpec(events=600, products=30, seed=5, bad_share=0.05))
    await publish(kafka, names["topic"], stream + [(b"3", b"not json")] * 5)
    await prometheus.wait_for('sum(inventory_sink_dead_letters_total{reason="invalid_json"}) >= 5')
    await prometheus.wait_for(
        f'count(inventory_sink_partition_lag{{topic="{names["topic"]}"}} == 0) == 3'
    )
    await prometheus.wait_for("sum(rate(inventory_sink_events_total[1m])) > 0")

    empty = []
    for panel in panels():
        for target in panel["targets"]:
            if not await prometheus.query(substituted(target["expr"])):
                empty.append(f"{panel['title']!r} ({target['refId']}): {target['expr']}")
    assert not empty, "panel queries that return nothing:\n" + "\n".join(empty)

    # The or-vector(0) fallbacks hide nothing: every metric a panel names is exported.
    exported = {family(name) for name in await prometheus.api("metadata")}
    named = {
        family(name)
        for panel in panels()
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    assert named - exported == set(), "panels name metrics the service does not export"

    # The dashboard's variables find the job and the consumer's instance.
    assert JOB in await prometheus.api(
        "label/job/values", **{"match[]": "inventory_sink_build_info"}
    )
    instances = await prometheus.api(
        "label/instance/values", **{"match[]": "inventory_sink_build_info"}
    )
    assert instances == [consumer.http_url().removeprefix("http://")]

    # What the panels show is what happened.
    applied = await prometheus.query(
        substituted(
            'sum by (fate) (rate(inventory_sink_events_total{fate="applied"}[$__rate_interval]))'
        )
    )
    assert float(applied[0]["value"][1]) > 0
    (build,) = await prometheus.query("inventory_sink_build_info")
    assert build["metric"]["contract"] and build["metric"]["version"]


async def test_prometheus_loads_and_evaluates_every_alert_rule(
    started: tuple[ConsumerProcess, Prometheus],
) -> None:
    _, prometheus = started
    await prometheus.ready()
    await prometheus.wait_for(f'up{{job="{JOB}"}} == 1')
    expected = {
        rule["alert"]: rule["expr"]
        for group in YAML(typ="safe").load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    for expr in expected.values():
        await prometheus.query(expr)  # parses: the API answers success

    deadline = time.monotonic() + 30
    health: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        groups = (await prometheus.api("rules", type="alert"))["groups"]
        health = {
            rule["name"]: (rule["health"], rule.get("lastError", ""))
            for group in groups
            for rule in group["rules"]
        }
        if set(health) == set(expected) and all(h == "ok" for h, _ in health.values()):
            break
        await asyncio.sleep(0.5)
    assert health == {name: ("ok", "") for name in expected}, prometheus.tail()
