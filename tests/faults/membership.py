"""Group membership faults: a replica frozen longer than the session timeout while another
takes over its partitions, and a storm of replicas joining and leaving."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.faults.harness import Harness
from tests.faults.scenarios import MAX_RECORD_BYTES, Scale, Scenario, stream
from tests.support import position_audit
from tests.support.consumer import ConsumerProcess

# Short, so the group gives a silent member's partitions away within seconds (the default
# is 10 s): the pause outlasts it, and a SIGKILLed member of the storm is noticed sooner.
SESSION_TIMEOUT_MS = 6_000
# Longer than the session timeout plus the survivor's rejoin: its partitions have moved.
PAUSE_S = 15.0

_ASSIGNED = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO service\.rebalance: partitions assigned"
)


def _settings() -> dict[str, object]:
    return {"kafka_session_timeout_ms": SESSION_TIMEOUT_MS, "max_record_bytes": MAX_RECORD_BYTES}


def _assignments(log: Path, after_byte: int) -> Iterator[float]:
    """Epoch times of the process's "partitions assigned" lines written after `after_byte`."""
    with log.open("rb") as f:
        f.seek(after_byte)
        for line in f.read().decode(errors="replace").splitlines():
            if found := _ASSIGNED.match(line):
                yield datetime.strptime(found.group("at"), "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def _reassigned(process: ConsumerProcess, after_byte: int, timeout: float) -> float:
    """When the woken process was next given partitions (epoch seconds); the time waited out
    if it never was (it then owns nothing, and every write it made counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next(_assignments(process.log_path, after_byte), None)
        if found is not None:
            return found
        await asyncio.sleep(0.2)
    return time.time()


async def _sample_sockets(owners: position_audit.SocketOwners, h: Harness) -> None:
    while True:
        owners.sample(h.consumers)
        await asyncio.sleep(0.2)


async def _wait_owning(
    process: ConsumerProcess, owners: position_audit.SocketOwners, h: Harness
) -> None:
    """Until `process` has committed a position since it was last given partitions."""
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        assigned = list(_assignments(process.log_path, 0))
        if assigned:
            owners.sample(h.consumers)
            if any(
                w.committed > max(assigned) and owners.of(w) == process.name
                for w in await position_audit.writes(h.engine)
            ):
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{process.name} never wrote as a member of the group:\n{process.tail()}")


async def _freeze_holding_locks(
    victim: ConsumerProcess, owners: position_audit.SocketOwners, h: Harness
) -> tuple[float, str]:
    """SIGSTOP `victim` between its lock of positions and its commit (the worst moment: its
    transaction holds its partitions' rows); the time it was frozen (epoch seconds) and what
    its locking session was doing then."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        ports = owners.ports_of(victim.name)
        if ports & (await position_audit.locking_ports(h.engine)).keys():
            frozen_at = time.time()
            victim.pause()
            await asyncio.sleep(0.2)
            locking = await position_audit.locking_ports(h.engine)
            if held := [locking[port] for port in ports & locking.keys()]:
                return frozen_at, ", ".join(held)  # frozen with the rows locked
            victim.resume()  # it committed in between: try again
        await asyncio.sleep(0.005)
    raise AssertionError(f"{victim.name} was never seen holding locked positions")


@dataclass
class PauseReport:
    """One pause: what the survivor wrote while the victim was frozen, and what the victim
    wrote after waking before it was given partitions again (must be nothing)."""

    victim: str
    taken_over: set[int]
    after_waking: list[position_audit.Write]
    in_flight: int  # of after_waking: transactions begun before the freeze
    unattributed: int


def pause(scale: Scale, pauses: int = 2) -> Scenario:
    """Two replicas in one group under load; one is SIGSTOPped for longer than the session
    timeout, so the group gives its partitions to the other, then SIGCONTed. From waking until
    the group gives it partitions again it must commit no position (hence no row: rows and
    positions share each transaction), whatever it was doing when frozen."""
    pairs = stream(scale, seed=707)
    publish_s = scale.publish_s + pauses * PAUSE_S

    async def drive(h: Harness) -> int:
        await position_audit.install(h.engine)
        owners = position_audit.SocketOwners()
        sampler = asyncio.create_task(_sample_sockets(owners, h))
        reports: list[PauseReport] = []
        try:
            group = [h.consumer("replica"), h.consumer("replica")]
            publisher = asyncio.create_task(h.publish(pairs, publish_s))
            for n in range(pauses):
                await asyncio.sleep(h.rng.uniform(2.0, 5.0))
                victim, survivor = group[n % 2], group[1 - n % 2]
                # Both are members and have written since their last assignment.
                await _wait_owning(victim, owners, h)
                await _wait_owning(survivor, owners, h)
                stored = await h.wait_in_flight(published=publisher)
                if stored is None:
                    break
                owners.sample(h.consumers)
                assigned_at = max(_assignments(victim.log_path, 0))
                boundary = victim.log_path.stat().st_size
                frozen_at, doing = await _freeze_holding_locks(victim, owners, h)
                h.fault_done(stored)
                await asyncio.sleep(PAUSE_S)
                woke_at = time.time()
                victim.resume()
                reassigned_at = await _reassigned(victim, boundary, 60.0)
                await asyncio.sleep(1.0)  # commits of the moment have landed
                owners.sample(h.consumers)
                written = await position_audit.writes(h.engine)
                before = {
                    w.partition
                    for w in written
                    if assigned_at < w.committed < frozen_at and owners.of(w) == victim.name
                }
                moved = [
                    w
                    for w in written
                    if frozen_at < w.committed < woke_at
                    and owners.of(w) == survivor.name
                    and w.partition in before
                ]
                taken = {w.partition for w in moved}
                took_s = min((w.committed for w in moved), default=woke_at) - frozen_at
                late = [
                    w
                    for w in written
                    if woke_at < w.committed < reassigned_at and owners.of(w) != survivor.name
                ]
                reports.append(
                    PauseReport(
                        victim.name,
                        taken,
                        [w for w in late if owners.of(w) == victim.name],
                        sum(1 for w in late if w.began < frozen_at),
                        sum(1 for w in late if owners.of(w) is None),
                    )
                )
                print(
                    f"pause {n + 1}: {victim.name} frozen {woke_at - frozen_at:.1f}s "
                    f"(its locking session: {doing}), "
                    f"{survivor.name} took over partitions {sorted(taken)} meanwhile (first "
                    f"commit {took_s:.1f}s after the freeze); after "
                    f"waking, {victim.name} was given partitions again "
                    f"{reassigned_at - woke_at:.1f}s later and committed "
                    f"{len(reports[-1].after_waking)} positions before that "
                    f"({reports[-1].in_flight} begun before the freeze, "
                    f"{reports[-1].unattributed} unattributed)"
                )
            await publisher
        finally:
            sampler.cancel()
            await position_audit.remove(h.engine)
        assert reports, "no pause hit work in flight"
        for report in reports:
            # The fault mattered: the survivor committed for the frozen replica's partitions.
            assert report.taken_over, f"nothing of {report.victim}'s partitions moved: {report}"
            assert not report.after_waking and not report.unattributed, (
                f"{report.victim} committed positions for partitions it no longer owned after "
                f"waking: {report.after_waking}"
            )
        return len(reports)

    return Scenario("pause", pairs, drive, settings=_settings())


# The storm's members: how many at most, and how long between two membership changes.
STORM_MEMBERS = 4
STORM_GAP_S = (2.0, 5.0)


def _longest_stall(h: Harness, start: float, end: float, total: int) -> float:
    """Longest stretch in [start, end] without the stored position moving while records
    were still to be applied."""
    longest, since, last = 0.0, start, -1
    for at, stored in h.progress:
        if at < start or at > end:
            continue
        if stored != last or stored >= total:
            longest = max(longest, at - since)
            since, last = at, stored
    return max(longest, end - since) if last < total else longest


def _rebalances(processes: list[ConsumerProcess]) -> int:
    """Rebalances the group went through: the members of one log "partitions assigned"
    within moments of each other, so assignments more than a second apart are two."""
    times: list[float] = []
    for process in processes:
        for start in range(1, process.starts + 1):
            with contextlib.suppress(FileNotFoundError):
                times += _assignments(process.log_dir / f"{process.name}-{start}.log", 0)
    times.sort()
    return sum(1 for n, at in enumerate(times) if n == 0 or at - times[n - 1] > 1.0)


def _joined(process: ConsumerProcess) -> bool:
    """Whether it has been a member of the group (a process SIGTERMed while Python is still
    importing it dies of the signal before the service can handle it: it held nothing)."""
    return next(_assignments(process.log_path, 0), None) is not None


async def _stop(process: ConsumerProcess) -> None:
    """SIGTERM a member: it finishes its batch and leaves the group, exiting 0."""
    code = await asyncio.to_thread(process.stop)
    assert code == 0, f"{process.name} exited {code} on SIGTERM:\n{process.tail()}"


def storm(scale: Scale, storm_s: float) -> Scenario:
    """Replicas join and leave every few seconds for `storm_s` under load (a leaving one is
    SIGTERMed or SIGKILLed at random), then one stays and catches up alone."""
    pairs = stream(scale, seed=808)

    async def drive(h: Harness) -> int:
        h.consumer("storm")
        publisher = asyncio.create_task(h.publish(pairs, storm_s))
        started = time.monotonic()
        changes = joins = terms = kills = 0
        while time.monotonic() - started < storm_s:
            await asyncio.sleep(h.rng.uniform(*STORM_GAP_S))
            alive = [c for c in h.consumers if c.alive()]
            stored = await h.stored_progress()
            if len(alive) < 2 or (len(alive) < STORM_MEMBERS and h.rng.random() < 0.5):
                h.consumer("storm")
                joins += 1
            else:
                leaving = h.rng.choice(alive)
                if h.rng.random() < 0.5 and _joined(leaving):
                    await _stop(leaving)
                    terms += 1
                else:
                    leaving.kill()
                    kills += 1
            changes += 1
            if stored < len(h.positions):
                h.fault_done(stored)
        # One stays: the others leave (alternately gracefully and not), it catches up alone.
        *leaving_last, staying = [c for c in h.consumers if c.alive()]
        for n, leaving in enumerate(leaving_last):
            if n % 2 or not _joined(leaving):
                leaving.kill()
                kills += 1
            else:
                await _stop(leaving)
                terms += 1
            changes += 1
        await publisher
        await h.wait_caught_up(scale.catch_up_s)
        stall = _longest_stall(h, started, time.monotonic(), len(pairs))
        print(
            f"storm: {changes} membership changes in {storm_s:.0f}s ({joins} joins, {terms} "
            f"SIGTERM, {kills} SIGKILL), {_rebalances(h.consumers)} rebalances, "
            f"longest without progress {stall:.1f}s; {staying.name} caught up alone"
        )
        return changes

    return Scenario("storm", pairs, drive, settings=_settings())
