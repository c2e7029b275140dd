"""Run the real service (`python -m service run`) as a child process."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from testbed.environment import settings_env

ROOT = Path(__file__).resolve().parents[2]


class ConsumerProcess:
    """One consumer process; its output goes to a log file kept for failure reports."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "consumer") -> None:
        self.env = settings_env(settings)
        self.log_dir = log_dir
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._log.close()

    def pause(self) -> None:
        """SIGSTOP: a process frozen (a long GC pause, a stopped VM) that still holds its
        connections and whatever it was doing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: the frozen process carries on where it stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if not self.alive():
                raise AssertionError(f"{self.name} exited early:\n{self.tail()}")
            time.sleep(0.2)
        raise AssertionError(f"{self.name} never logged {text!r}:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def letters_logged(self) -> int:
        """How many dead letters the log reports: a batch's letters share one line
        (`dead-lettered N records of ...`), a lone letter has its own."""
        return letters_logged(self.log_path.read_text(errors="replace"))

    def http_url(self, timeout: float = 60.0) -> str:
        """http://host:port of the running process's HTTP server (HTTP_PORT=0 picks a free
        port; uvicorn logs the one it bound)."""
        self.wait_for_log("Uvicorn running on", timeout)
        found = re.search(r"Uvicorn running on (https?://\S+)", self.log_path.read_text())
        assert found is not None, self.tail()
        return found.group(1).replace("://0.0.0.0:", "://127.0.0.1:")


# The dead-letter producer's lines (service/kafka/dead_letter_producer.py).
_LETTERS_LINE = re.compile(r"dead-lettered (?:(\d+) records of |\S+@\d+ as )")


def letters_logged(log: str) -> int:
    """How many dead letters the lines of `log` report."""
    return sum(int(many or 1) for many in _LETTERS_LINE.findall(log))


async def wait_for_products(
    engine: AsyncEngine, consumer: ConsumerProcess, want: set[int], timeout: float = 60.0
) -> set[int]:
    """The product ids in the table once they include `want`, or when `consumer` has died or
    `timeout` has passed (the caller asserts what it expects of them)."""
    deadline = time.monotonic() + timeout
    found: set[int] = set()
    while time.monotonic() < deadline and consumer.alive():
        async with engine.connect() as connection:
            found = set((await connection.execute(text("SELECT id FROM products"))).scalars())
        if found >= want:
            break
        await asyncio.sleep(0.3)
    return found
