"""Host CPU-seconds by process, between two moments: the consumer under test (its process
tree), the PostgreSQL backends serving its database, PostgreSQL's own background processes,
and the Kafka broker.

Every `interval` seconds /proc is scanned once: each process's utime + stime
(/proc/<pid>/stat) is remembered per group, so a process that starts while the account runs
(a new backend, a child) counts from zero, and one that ends counts up to its last sample.
PostgreSQL processes are told apart by their title (`postgres: 15/main: USER DATABASE
HOST(PORT) STATE` for a client backend), under the postmaster of the server the bench talks
to; the broker is the `kafka.Kafka` JVM whose properties name the bootstrap port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
CONSUMER, PG_BACKENDS, PG_OTHER, KAFKA = "consumer", "pg backends", "pg other", "kafka"
GROUPS = (CONSUMER, PG_BACKENDS, PG_OTHER, KAFKA)
# "postgres: 15/main: inventory inventory_bench 127.0.0.1(51234) idle" (cluster name optional)
_BACKEND = re.compile(r"^postgres: (?:\S+: )?(\S+) (\S+) (?:\S+\(\d+\)|\[local\])")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cpu_s: float  # utime + stime
    title: str  # /proc/<pid>/cmdline, NULs as spaces


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        cpu_s=(int(fields[11]) + int(fields[12])) / TICKS,
        title=title.decode(errors="replace"),
    )


def scan() -> dict[int, Proc]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            proc = read_proc(int(entry.name))
            if proc is not None:
                found[proc.pid] = proc
    return found


def descendants(procs: Mapping[int, Proc], roots: Iterable[int]) -> set[int]:
    """The roots and every process below them."""
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    out: set[int] = set()
    stack = [pid for pid in roots if pid in procs]
    while stack:
        pid = stack.pop()
        if pid not in out:
            out.add(pid)
            stack.extend(children.get(pid, ()))
    return out


def backend_database(title: str) -> str | None:
    """The database a PostgreSQL client backend serves, from its process title."""
    found = _BACKEND.match(title)
    return found.group(2) if found else None


def kafka_broker(procs: Mapping[int, Proc], port: int) -> int | None:
    """The broker JVM listening on `port`: a `kafka.Kafka` process whose properties file (its
    last argument) names that port; the only broker when just one runs."""
    brokers = [proc for proc in procs.values() if " kafka.Kafka " in f"{proc.title} "]
    for proc in brokers:
        with contextlib.suppress(OSError):
            text = Path(proc.title.split()[-1]).read_text()
            if re.search(rf"^listeners=.*:{port}\b", text, re.MULTILINE):
                return proc.pid
    return brokers[0].pid if len(brokers) == 1 else None


Selector = Callable[[Mapping[int, Proc]], set[int]]


def selectors(
    consumer_pids: Iterable[int],
    postmaster: int | None,
    database: str,
    kafka_port: int,
    exclude: Iterable[int] = (),
) -> dict[str, Selector]:
    """How each group's processes are found in a scan. `exclude`: the bench's own backends
    (its progress poller), which are not the system's cost."""
    roots, skip = list(consumer_pids), set(exclude)

    def consumer(procs: Mapping[int, Proc]) -> set[int]:
        return descendants(procs, roots)

    def postgres(procs: Mapping[int, Proc]) -> set[int]:
        return descendants(procs, [postmaster]) - skip if postmaster else set()

    def backends(procs: Mapping[int, Proc]) -> set[int]:
        return {pid for pid in postgres(procs) if backend_database(procs[pid].title) == database}

    def other(procs: Mapping[int, Proc]) -> set[int]:
        return {pid for pid in postgres(procs) if backend_database(procs[pid].title) is None}

    def kafka(procs: Mapping[int, Proc]) -> set[int]:
        broker = kafka_broker(procs, kafka_port)
        return descendants(procs, [broker]) if broker else set()

    return {CONSUMER: consumer, PG_BACKENDS: backends, PG_OTHER: other, KAFKA: kafka}


@dataclass
class CpuAccount:
    """CPU-seconds per group between `start()` and `stop()`."""

    select: dict[str, Selector]
    interval: float = 0.5
    _base: dict[int, float] = field(default_factory=dict)  # pid -> CPU-s at start (or 0)
    _last: dict[str, dict[int, float]] = field(default_factory=dict)  # group -> pid -> CPU-s
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        procs = scan()
        self._base = {pid: proc.cpu_s for pid, proc in procs.items()}
        self._last = {name: {} for name in self.select}
        self._sample(procs)
        self._task = asyncio.create_task(self._run())

    def _sample(self, procs: Mapping[int, Proc]) -> None:
        for name, select in self.select.items():
            for pid in select(procs):
                self._last[name][pid] = procs[pid].cpu_s

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._sample(await asyncio.to_thread(scan))

    async def stop(self) -> dict[str, float]:
        """The CPU-seconds by group (again, on a second call: it stops sampling once)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            self._sample(scan())
        return {
            name: sum(cpu - self._base.get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in self._last.items()
        }
