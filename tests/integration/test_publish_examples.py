"""The publishing examples of docs/how-to/publish-events.md, run as written against the real
broker: each puts one record on the topic that the consumer's decode accepts, with its key and
contract-version header."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from service.config.settings import Settings
from service.core.decoding import Unusable, decode
from service.kafka.topics import ensure_topics
from tests.support.kafka import read_topic

ROOT = Path(__file__).resolve().parents[2]

# The pages' command blocks, verbatim (the docs test checks that each line is here).
PYTHON_EXAMPLE = """\
python examples/publish.py 42
"""
KCAT_EXAMPLE = r"""
echo '{"event_id": "3f2b8a9e-6c1d-4e7a-9b5f-1a2c3d4e5f60", "event_type": "product.upserted", "occurred_at": "2026-01-01T09:00:00+00:00", "product_id": 42, "version": 1, "data": {"name": "Espresso beans 1kg", "price": "24.90"}}' \
  | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$KAFKA_TOPIC" -k 42 -H contract-version=1
"""  # noqa: E501


def run_documented(command: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    """The command in bash from the repository root, with the page's environment: the broker
    and topic, and this interpreter as `python`."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        KAFKA_TOPIC=settings.kafka_topic,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def assert_one_accepted_event(settings: Settings, kafka: str) -> None:
    [record] = await read_topic(kafka, settings.kafka_topic, 1)
    assert record.key == b"42"
    assert list(record.headers) == [("contract-version", b"1")]
    event = decode(record)
    assert not isinstance(event, Unusable), event
    assert (event.event_type, event.product_id) == ("product.upserted", 42)


async def test_the_python_example_publishes_an_event_the_service_accepts(
    settings: Settings, kafka: str
) -> None:
    await ensure_topics(settings)

    result = run_documented(PYTHON_EXAMPLE, settings)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("published "), result.stdout
    assert f" to {settings.kafka_topic}[" in result.stdout
    await assert_one_accepted_event(settings, kafka)


async def test_the_kcat_example_publishes_an_event_the_service_accepts(
    settings: Settings, kafka: str
) -> None:
    assert shutil.which("kcat"), "kcat is missing: scripts/local-stack up installs it"
    await ensure_topics(settings)

    result = run_documented(KCAT_EXAMPLE, settings)

    assert result.returncode == 0, result.stderr
    await assert_one_accepted_event(settings, kafka)
