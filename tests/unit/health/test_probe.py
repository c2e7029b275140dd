"""Probes (named checks, answered over ASGI), the throttle, the consume-loop check and the
readiness metrics, with fakes in place of the services."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from service.health.checks import Lifecycle, consumer_task_check, schema_check, started_check
from service.health.collector import HealthMetrics
from service.health.probe import Probe, Verdict, every, probe_route, scrape_route
from service.health.progress import ProgressTracker
from service.postgres.schema_gate import SchemaNotReady
from tests.support import asgi


async def call(app: Any, path: str = "/health/ready") -> tuple[int, bytes]:
    return await asgi.call(app, path)


async def test_a_registered_failing_check_makes_the_probe_answer_503_naming_it() -> None:
    readiness = Probe("ready")
    readiness.register("database", lambda: None)

    async def progress() -> str | None:
        return None

    readiness.register("progress", progress)
    route = probe_route(readiness)
    status, body = await call(route)
    assert status == 200
    assert json.loads(body) == {
        "status": "ok",
        "checks": {"database": {"ok": True}, "progress": {"ok": True}},
    }

    stopped = {("events", 2)}
    readiness.register(
        "stopped_partitions",
        lambda: f"stopped: {sorted(stopped)}; run `inventory-sink positions`" if stopped else None,
    )
    status, body = await call(route)
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "unavailable"
    assert answer["checks"]["stopped_partitions"] == {
        "ok": False,
        "problem": "stopped: [('events', 2)]; run `inventory-sink positions`",
    }
    assert answer["checks"]["database"] == {"ok": True}

    stopped.clear()
    assert (await call(route))[0] == 200


def test_check_names_are_unique() -> None:
    probe = Probe("ready")
    probe.register("kafka", lambda: None)
    with pytest.raises(ValueError, match="already has a check named 'kafka'"):
        probe.register("kafka", lambda: None)
    assert probe.checks == ("kafka",)


async def test_a_check_that_hangs_or_raises_fails_with_a_reason_and_others_still_answer() -> None:
    probe = Probe("ready", timeout_s=0.2)

    async def hangs() -> str | None:
        await asyncio.sleep(60)
        return None

    def raises() -> str | None:
        raise RuntimeError("boom")

    probe.register("hangs", hangs)
    probe.register("raises", raises)
    probe.register("fine", lambda: None)
    verdict = await probe.evaluate()
    assert verdict.problems == {
        "hangs": "the hangs check did not answer within 0.2s",
        "raises": "the raises check failed: RuntimeError: boom",
        "fine": None,
    }
    assert verdict.status_code == 503


async def test_failing_and_recovering_checks_are_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    problem: list[str | None] = [None]
    probe = Probe("ready")
    probe.register("progress", lambda: problem[0])
    with caplog.at_level(logging.INFO, logger="service.health"):
        await probe.evaluate()
        problem[0] = "stalled with lag"
        await probe.evaluate()
        await probe.evaluate()
        problem[0] = None
        await probe.evaluate()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "ready: the progress check fails: stalled with lag"),
        ("INFO", "ready: the progress check passes again"),
    ]


async def test_every_runs_the_check_at_most_once_per_interval() -> None:
    now = [0.0]
    calls: list[float] = []

    def slow_check() -> str | None:
        calls.append(now[0])
        return f"problem {len(calls)}"

    check = every(30.0, slow_check, clock=lambda: now[0])
    assert await check() == "problem 1"
    now[0] = 29.9
    assert await check() == "problem 1"
    now[0] = 30.0
    assert await check() == "problem 2"
    assert calls == [0.0, 30.0]


async def test_the_schema_check_reports_what_the_start_up_check_raises() -> None:
    async def behind(engine: Any) -> None:
        raise SchemaNotReady("database schema is at revision a, the service needs b; migrate")

    async def current(engine: Any) -> None:
        return None

    assert await schema_check(None, behind)() == (
        "database schema is at revision a, the service needs b; migrate"
    )
    assert await schema_check(None, current)() is None


class FakeSubscriber:
    def __init__(self) -> None:
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []


async def test_liveness_fails_once_the_consume_loop_has_ended() -> None:
    subscriber, lifecycle = FakeSubscriber(), Lifecycle()
    liveness = Probe("live")
    liveness.register("consumer_task", consumer_task_check(subscriber, lifecycle, 300))
    assert (await liveness.evaluate()).ok  # still starting: nothing to judge yet

    await lifecycle.started()
    loop = asyncio.create_task(asyncio.sleep(60))
    subscriber.tasks.append(loop)
    assert (await liveness.evaluate()).ok

    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    verdict = await liveness.evaluate()
    assert not verdict.ok
    assert "consume loop has ended" in str(verdict.problems["consumer_task"])

    subscriber.running = False
    assert "subscriber has stopped" in str((await liveness.evaluate()).problems["consumer_task"])
    await lifecycle.stopping()  # shutting down: a stopped subscriber is expected
    assert (await liveness.evaluate()).ok


async def test_a_start_passes_the_startup_probe_once_and_fails_liveness_after_the_bound() -> None:
    now = [100.0]
    subscriber, lifecycle = FakeSubscriber(), Lifecycle(clock=lambda: now[0])
    liveness, startup = Probe("live"), Probe("started")
    liveness.register("consumer_task", consumer_task_check(subscriber, lifecycle, 300))
    startup.register("started", started_check(lifecycle))
    now[0] += 299
    assert (await liveness.evaluate()).ok  # still within START_TIMEOUT_S
    problem = (await startup.evaluate()).problems["started"]
    assert problem is not None and problem.startswith("the consumer has not started yet (299s)")

    now[0] += 2  # the start hangs: alive, but it can never become ready
    problem = (await liveness.evaluate()).problems["consumer_task"]
    assert problem is not None and "START_TIMEOUT_S=300s" in problem

    await lifecycle.started()
    subscriber.tasks.append(asyncio.create_task(asyncio.sleep(60)))
    assert (await liveness.evaluate()).ok and (await startup.evaluate()).ok
    await lifecycle.stopping()
    now[0] += 1000
    assert (await liveness.evaluate()).ok and (await startup.evaluate()).ok  # it did start
    subscriber.tasks[0].cancel()


async def test_metrics_show_readiness_and_each_partitions_progress_at_scrape_time() -> None:
    from prometheus_client import make_asgi_app

    registry = CollectorRegistry()
    tracker = ProgressTracker(lambda: 100.0)
    metrics = HealthMetrics(registry, tracker)
    readiness = Probe("ready", on_verdict=metrics.record)
    problem: list[str | None] = ["stalled"]
    readiness.register("progress", lambda: problem[0])
    readiness.register("kafka", lambda: None)

    def observe() -> None:
        tracker.committed({("events", 0): 5, ("events", 1): 9})
        tracker.observe(
            [("events", 0), ("events", 1)], {}, {}, {("events", 0): 12, ("events", 1): 9}
        )

    readiness.register("observe", lambda: observe())  # stands in for the progress monitor
    status, body = await call(scrape_route(readiness, make_asgi_app(registry)), "/metrics")
    text = body.decode()
    assert status == 200
    assert "inventory_sink_ready 0.0" in text
    assert 'inventory_sink_ready_check{check="progress"} 0.0' in text
    assert 'inventory_sink_ready_check{check="kafka"} 1.0' in text
    assert 'inventory_sink_partition_lag{partition="0",topic="events"} 7.0' in text
    assert 'inventory_sink_partition_lag{partition="1",topic="events"} 0.0' in text
    assert 'inventory_sink_seconds_since_progress{partition="0",topic="events"} 0.0' in text

    problem[0] = None
    await readiness.evaluate()
    assert b"inventory_sink_ready 1.0" in generate_latest(registry)


def test_a_verdict_body_names_every_check() -> None:
    verdict = Verdict("ready", {"kafka": None, "schema": "behind; migrate"})
    assert verdict.body() == {
        "status": "unavailable",
        "checks": {"kafka": {"ok": True}, "schema": {"ok": False, "problem": "behind; migrate"}},
    }
