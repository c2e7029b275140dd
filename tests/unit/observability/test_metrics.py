"""/metrics of the application `python -m service run` serves: the sink's own series, the
process and Python runtime series, and which release runs (inventory_sink_build_info)."""

from __future__ import annotations

import platform
import time
from importlib.metadata import version

from service.app import create_app
from service.config.settings import Settings
from service.core.contract import CONTRACT_VERSION
from service.core.domain import Reason
from service.observability.metrics import FATES
from service.write_path.transaction import BatchReport
from tests.support.asgi import call
from tests.support.scrape import samples


async def scrape() -> str:
    """The service's /metrics, as its application serves it. The consumer is not started and
    nothing listens on port 1: every readiness check fails at once, and the scrape answers."""
    settings = Settings(
        postgres_host="127.0.0.1",
        postgres_port=1,
        postgres_user="inventory",
        postgres_password="unused",
        postgres_db="inventory",
        kafka_bootstrap_servers="127.0.0.1:1",
    )
    app = create_app(settings)
    route = dict(app.routes)["/metrics"]
    status, body = await call(route, "/metrics")
    assert status == 200, body
    return body.decode()


async def test_build_info_names_the_release_the_python_and_the_contract() -> None:
    text = await scrape()
    labels = (
        f'{{contract="{CONTRACT_VERSION}",python="{platform.python_version()}",'
        f'version="{version("inventory-sink")}"}}'
    )
    assert samples(text, "inventory_sink_build_info") == {labels: 1.0}, text
    assert "# TYPE inventory_sink_build_info gauge" in text


async def test_process_series_describe_this_process() -> None:
    text = await scrape()
    cpu = samples(text, "process_cpu_seconds_total")[""]
    memory = samples(text, "process_resident_memory_bytes")[""]
    started = samples(text, "process_start_time_seconds")[""]
    assert cpu > 0
    assert memory > 10 * 2**20  # an interpreter with the service imported: tens of MB
    assert 0 < time.time() - started < 24 * 3600  # this test's own process
    assert samples(text, "process_open_fds")[""] > 0


async def test_python_runtime_and_garbage_collector_series_are_served() -> None:
    text = await scrape()
    (info,) = samples(text, "python_info")
    assert f'version="{platform.python_version()}"' in info
    assert set(samples(text, "python_gc_collections_total")) == {
        f'{{generation="{generation}"}}' for generation in range(3)
    }
    assert set(samples(text, "python_gc_objects_collected_total")) == {
        f'{{generation="{generation}"}}' for generation in range(3)
    }


async def test_the_sinks_own_series_are_still_there_beside_them() -> None:
    text = await scrape()
    assert samples(text, "inventory_sink_ready") == {"": 0.0}  # nothing listens on port 1
    assert samples(text, "inventory_sink_batches_total") == {"": 0.0}
    assert "# TYPE inventory_sink_batch_seconds histogram" in text


async def test_every_dead_letter_reason_is_served_at_zero_before_its_first_letter() -> None:
    """rate() sees a reason's first letters only if its series existed before them."""
    text = await scrape()
    assert samples(text, "inventory_sink_dead_letters_total") == {
        f'{{reason="{reason.value}"}}': 0.0 for reason in Reason
    }


async def test_every_fate_is_served_at_zero_before_the_first_batch() -> None:
    """rate() of applied events sees the first batch too; the fates are those the write path
    counts."""
    text = await scrape()
    assert set(FATES) == set(BatchReport().as_counts())
    assert samples(text, "inventory_sink_events_total") == {
        f'{{fate="{fate}"}}': 0.0 for fate in FATES
    }
