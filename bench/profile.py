"""Optional sampling profile of the service with py-spy (`--profile`), summarised as text."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record --format raw` of one process until it exits (collapsed stacks)."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("--profile needs py-spy: /tmp/venv/bin/pip install py-spy")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            executable,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--output",
            str(self.output),
            "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def wait(self, timeout: float = 30.0) -> None:
        """py-spy writes its file once the profiled process has exited."""
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.terminate()
                await self.process.wait()


def _frame(frame: str) -> tuple[str, str]:
    """(`function (module path)`, package) of a py-spy raw frame `function (path:line)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    package = path.split("/", 1)[0] if "/" in path else path
    if package.endswith(".py"):
        package = package[:-3]
    return f"{name} ({path})", package


_WRAPPERS = {"<module>", "main", "_run"}


def summarise(path: Path, top: int = 12) -> list[str]:
    """Where the service's CPU time went: by package, by function (own), by its own code
    (inclusive). Samples taken while importing (start-up) are counted apart."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    startup = total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if "importlib._bootstrap" in stack:
            startup += count
            continue
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += count
        leaf, package = frames[-1]
        own[leaf] += count
        packages[package] += count
        for name in {name for name, pkg in frames if pkg == "service"}:
            if name.split(" ", 1)[0] not in _WRAPPERS:
                inclusive[name] += count
    if total == 0:
        return [f"profile {path}: no samples"]

    def share(counter: Counter[str]) -> list[str]:
        return [f"    {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]

    return [
        f"profile {path}: {total:,} samples of CPU work ({startup:,} more while importing at "
        "start-up, left out); shares of the CPU work:",
        "  by package (own time):",
        *share(packages),
        "  by function (own time):",
        *share(own),
        "  the service's own functions (inclusive time):",
        *share(inclusive),
    ]
