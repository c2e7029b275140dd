"""A database that comes back read-only: the failover's address moves to the replica before it
is promoted, as a proxy or a virtual IP that moves first does. The replica is a hot standby:
it answers reads, and refuses every write ("cannot execute ... in a read-only transaction",
SQLSTATE 25006). It stays so for longer than STALL_TIMEOUT_S, and is promoted only then.

While read-only the service must hold every record (nothing written, nothing skipped: the
standby's positions do not move), retry its batches (inventory_sink_batch_retries_total
rises), and be unready with the database check naming the read-only standby; once promoted,
the commits the replica never received are applied again, as in `failover`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from tests.faults.failover import (
    PARTITIONS,
    SETTINGS,
    FailoverScale,
    converge,
    phases,
    prove_loss,
)
from tests.faults.harness import Harness
from tests.faults.scenarios import Scenario, stream
from tests.support.consumer import ConsumerProcess
from tests.support.replicated_postgres import ReplicatedPostgres
from tests.support.scrape import get, samples

STALL_TIMEOUT_S = 5.0
READ_ONLY_S = 15.0  # longer than STALL_TIMEOUT_S: the stall check must fail too
RETRIES = "inventory_sink_batch_retries_total"


@dataclass
class ReadOnlyWindow:
    """What the service's endpoints said while the database was read-only."""

    answers: list[tuple[float, int, dict[str, object]]] = field(default_factory=list)
    retries: list[float] = field(default_factory=list)

    def first_unready_s(self) -> float | None:
        return next((at for at, status, _ in self.answers if status == 503), None)


async def _watch_read_only(url: str, service: ConsumerProcess, seconds: float) -> ReadOnlyWindow:
    """Ask /health/ready and /metrics every half second for `seconds`."""
    window = ReadOnlyWindow()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if not service.alive():
            raise AssertionError(f"the service exited while read-only:\n{service.tail()}")
        status, body = await get(f"{url}/health/ready")
        window.answers.append((time.monotonic() - started, status, json.loads(body)))
        metrics = (await get(f"{url}/metrics"))[1]
        window.retries.append(sum(samples(metrics, RETRIES).values()))
        await asyncio.sleep(0.5)
    return window


def _judge(window: ReadOnlyWindow, service: ConsumerProcess) -> str:
    """Fail unless readiness went to 503 naming the read-only standby and stayed there, the
    stall check failed past STALL_TIMEOUT_S and the retries rose; a one-line summary."""
    unready_at = window.first_unready_s()
    assert unready_at is not None, f"/health/ready never failed while read-only:\n{service.tail()}"
    after = [(at, status, body) for at, status, body in window.answers if at >= unready_at]
    ready_again = [at for at, status, _ in after if status != 503]
    assert not ready_again, f"/health/ready passed again at {ready_again}s while read-only"
    at, _, last = window.answers[-1]
    checks = last["checks"]
    assert isinstance(checks, dict)
    problem = str(checks["database"].get("problem", ""))
    assert "is read-only" in problem and "standby" in problem, checks
    stalled = str(checks["progress"].get("problem", ""))
    assert "stalled with lag" in stalled, checks
    assert window.retries[-1] > window.retries[0], f"retries did not rise: {window.retries}"
    failing = sorted(name for name, check in checks.items() if not check["ok"])
    return (
        f"unready {unready_at:.1f}s after the repoint (failing {failing} at {at:.0f}s: "
        f"{problem[:70]}...); batch retries {window.retries[0]:.0f} -> {window.retries[-1]:.0f}"
    )


def read_only(scale: FailoverScale, pair: ReplicatedPostgres) -> Scenario:
    first, second, after_failover = phases(stream(scale, seed=1010))
    pairs = first + second + after_failover
    name = "read-only"

    async def drive(h: Harness) -> int:
        service = h.consumer()
        url = await asyncio.to_thread(service.http_url)
        await h.publish(first)
        await h.wait_caught_up(scale.catch_up_s)
        await asyncio.to_thread(pair.cut_replication)
        await h.publish(second)
        await h.wait_caught_up(scale.catch_up_s)  # on the primary alone
        group, topic = h.settings.kafka_group_id, h.settings.kafka_topic
        before = await asyncio.to_thread(pair.positions, pair.primary, group, topic)
        await asyncio.to_thread(pair.crash_primary)
        commits = await asyncio.to_thread(pair.commits_not_streamed)
        standby = await asyncio.to_thread(pair.positions, pair.replica, group, topic)
        prove_loss(name, before, standby, commits)

        pair.repoint()  # to the standby, still in recovery: read-only
        h.fault_done(sum(standby.values()), recovered_past=len(pairs) - 1)
        await h.publish(after_failover)  # busy partitions get work it cannot write
        window = await _watch_read_only(url, service, READ_ONLY_S)
        held = await asyncio.to_thread(pair.positions, pair.replica, group, topic)
        assert held == standby, f"positions moved on a read-only standby: {standby} -> {held}"
        print(f"{name}: {_judge(window, service)}")

        promoted_at = time.monotonic()
        await asyncio.to_thread(pair.promote)
        took = await converge(h, scale.converge_s, before, standby)
        print(f"{name}: every partition re-applied {took:.1f}s after the promotion")
        status, body = 0, ""
        while time.monotonic() - promoted_at < scale.converge_s:
            status, body = await get(f"{url}/health/ready")
            if status == 200:
                break
            await asyncio.sleep(0.5)
        assert status == 200, f"not ready again after the promotion: {body}"
        assert service.starts == 1 and service.alive(), "the service restarted or exited"
        return 1

    settings = dict(SETTINGS)
    settings.update(
        http_host="127.0.0.1", stall_timeout_s=STALL_TIMEOUT_S, progress_check_interval_s=1.0
    )
    return Scenario(name, pairs, drive, partitions=PARTITIONS, settings=settings)
