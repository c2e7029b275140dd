"""Measuring instruments: progress lines, process memory, percentiles, group membership."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rate_text(per_second: float) -> str:
    if per_second >= 10_000:
        return f"{per_second / 1000:.0f}k/s"
    if per_second >= 1000:
        return f"{per_second / 1000:.1f}k/s"
    return f"{per_second:.0f}/s"


class Progress:
    """Prints `label: done/total what, rate` to stderr at most every `every` seconds."""

    def __init__(self, label: str, total: int, what: str = "applied", every: float = 2.0) -> None:
        self.label = label
        self.total = total
        self.what = what
        self.every = every
        self._last_at = time.perf_counter()
        self._last_done = 0

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_at < self.every:
            return
        rate = (done - self._last_done) / max(now - self._last_at, 1e-9)
        say(f"{self.label}: {done}/{self.total} {self.what}, {rate_text(rate)}")
        self._last_at, self._last_done = now, done


def read_status_kb(pid: int, field_name: str) -> int | None:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in kB (None once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


@dataclass
class MemorySampler:
    """Samples a process's resident set (VmRSS) every `interval` seconds."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        started = time.perf_counter()
        while True:
            kb = read_status_kb(self.pid, "VmRSS")
            if kb is None:
                return
            self.samples.append((time.perf_counter() - started, kb / 1024))
            await asyncio.sleep(self.interval)

    def peak_mb(self) -> float:
        """VmHWM (the kernel's high-water mark of RSS), read now, before the process stops."""
        kb = read_status_kb(self.pid, "VmHWM")
        sampled = max((mb for _, mb in self.samples), default=0.0)
        return max(kb / 1024 if kb is not None else 0.0, sampled)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


class HostCpu:
    """Share of all CPUs busy (any process) between `start()` and `busy()`, from /proc/stat."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def start(self) -> None:
        self._start = self._read()

    def busy(self) -> float:
        busy, total = self._read()
        return (busy - self._start[0]) / max(total - self._start[1], 1)


async def host_busy(seconds: float = 1.0) -> float:
    """How busy the host's CPUs are right now (0..1), measured over `seconds`."""
    meter = HostCpu()
    await asyncio.sleep(seconds)
    return meter.busy()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; NaN if there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def wait_until_group_stable(bootstrap: str, group_id: str, timeout: float) -> float:
    """Wait until the consumer group has members and a settled assignment; returns seconds."""
    started = time.perf_counter()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="inventory-bench")
    await admin.start()
    try:
        while time.perf_counter() - started < timeout:
            (response,) = await admin.describe_consumer_groups([group_id])
            groups = response.to_object()["groups"]
            if groups and groups[0]["state"] == "Stable" and groups[0]["members"]:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    raise TimeoutError(f"consumer group {group_id} did not become Stable in {timeout:.0f} s")
