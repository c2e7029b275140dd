"""Run a throwaway server for a test: start it, wait for its ready line, stop it on exit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def serving(
    command: Sequence[str],
    log: Path,
    ready: bytes,
    what: str,
    *,
    timeout: float,
    poll: float = 0.2,
    stop: signal.Signals = signal.SIGKILL,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command` in a session of its own, its output appended to `log`; yield once
    `ready` appears there. On exit send `stop` to its process group (SIGKILL if it has not
    ended 30 s later)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while ready not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{what} did not start:\n{tail}")
            time.sleep(poll)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
