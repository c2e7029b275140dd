"""Child processes under test (the service, the naive consumer, the peers), with their logs
kept."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import IO

from bench import ROOT


class ChildExited(RuntimeError):
    """The child stopped before the benchmark was done with it."""


class Child:
    """One child process: stderr (and stdout unless piped) go to `<log_dir>/<name>.log`."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_dir: Path,
        pipe_stdout: bool,
        program: str = sys.executable,
    ) -> None:
        """`args` go to `program` (this Python unless told: a peer's JVM or its venv's Python)."""
        self.name = name
        self.args = [program, *args]
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.pipe_stdout = pipe_stdout
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            *self.args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE if self.pipe_stdout else self._log,
            stderr=self._log,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def check_alive(self) -> None:
        if not self.alive():
            code = self.process.returncode if self.process else None
            raise ChildExited(f"{self.name} exited early (code {code}):\n{self.tail()}")

    async def stop(self, timeout: float = 60.0, exiting: float = 0.0) -> int | None:
        """SIGTERM (the graceful path), then SIGKILL after `timeout` seconds.

        `exiting`: seconds to let a child that is already on its way out end by itself.
        """
        if self.process is None:
            return None
        if exiting and self.process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), exiting)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
