"""The fault suite restarts only the local stack it controls (tests/faults/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import StackControl

SCRIPT = """#!/bin/sh
echo "export POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=5432 POSTGRES_USER=u POSTGRES_PASSWORD=p"
echo "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092"
[ "$1" = env ] || echo "$1" >> "$(dirname "$0")/ran"
"""


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "local-stack"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    monkeypatch.setenv("LOCAL_STACK", str(path))
    return path


@pytest.mark.parametrize(
    ("postgres", "kafka"),
    [
        (("db.example.internal", 5432), "127.0.0.1:9092"),
        (("127.0.0.1", 5433), "127.0.0.1:9092"),
        (("127.0.0.1", 5432), "127.0.0.1:19092"),
    ],
)
def test_a_restart_of_services_elsewhere_is_refused_and_nothing_runs(
    script: Path, postgres: tuple[str, int], kafka: str
) -> None:
    control = StackControl(postgres, kafka)
    with pytest.raises(AssertionError, match="refusing to restart services this test did not"):
        control.restart_postgres()
    with pytest.raises(AssertionError, match="refusing"):
        control.restart_kafka()
    assert not (script.parent / "ran").exists()


def test_the_local_stack_it_controls_is_restarted(script: Path) -> None:
    control = StackControl(("127.0.0.1", 5432), "127.0.0.1:9092")
    control.restart_postgres()
    control.restart_kafka()
    assert (script.parent / "ran").read_text().split() == ["restart-postgres", "restart-kafka"]


def test_without_the_local_stack_nothing_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_STACK", raising=False)
    with pytest.raises(AssertionError, match="needs the local stack"):
        StackControl(("127.0.0.1", 5432), "127.0.0.1:9092").restart_postgres()
