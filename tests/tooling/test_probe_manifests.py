"""The Kubernetes manifest's probes ask endpoints the app serves, and its startup probe
gives a start the same bound as START_TIMEOUT_S (after which /health/live fails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from service.app import create_app
from service.config.settings import Settings

STATEFULSET = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "statefulset.yaml"


def consumer_container() -> dict[str, Any]:
    manifest = YAML(typ="safe").load(STATEFULSET.read_text())
    (container,) = [
        c for c in manifest["spec"]["template"]["spec"]["containers"] if c["name"] == "consumer"
    ]
    assert isinstance(container, dict)
    return container


def settings() -> Settings:
    return Settings(
        postgres_user="inventory",
        postgres_password="unused",  # type: ignore[arg-type]
        postgres_db="inventory",
        kafka_bootstrap_servers="127.0.0.1:9092",
    )


def test_every_probe_asks_an_endpoint_the_app_serves() -> None:
    served = {path for path, _ in create_app(settings()).routes}
    container = consumer_container()
    probes = {kind: container[kind]["httpGet"]["path"] for kind in container if "Probe" in kind}
    assert probes == {
        "startupProbe": "/health/started",  # passes only once the consumer has started
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    assert set(probes.values()) <= served


def test_the_startup_probe_bounds_a_start_as_start_timeout_s_does() -> None:
    probe = consumer_container()["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == settings().start_timeout_s == 300
