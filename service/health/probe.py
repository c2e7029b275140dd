"""Health probes: named checks, evaluated together, answered as JSON over HTTP.

A check is a callable, plain or async, that returns None when all is well or a sentence saying
what is wrong and how to fix it. A probe (`/health/live`, `/health/ready`) passes when every
check it holds passes. Anyone can add a check to a probe:

    readiness.register("stopped_partitions", lambda: None if not stopped else "...")
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faststream.asgi import AsgiResponse, get
from faststream.asgi.handlers import GetHandler
from faststream.asgi.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("service.health")

Problem = str | None
Check = Callable[[], Problem | Awaitable[Problem]]
# Below the 5 s timeout of the image's HEALTHCHECK and of typical orchestrator probes.
CHECK_TIMEOUT_S = 3.5


@dataclass(frozen=True, slots=True)
class Verdict:
    """Each check's problem (None: passing), in the order the checks were registered."""

    probe: str
    problems: dict[str, Problem]

    @property
    def ok(self) -> bool:
        return all(problem is None for problem in self.problems.values())

    @property
    def status_code(self) -> int:
        return 200 if self.ok else 503

    def body(self) -> dict[str, Any]:
        checks: dict[str, dict[str, Any]] = {
            name: {"ok": True} if problem is None else {"ok": False, "problem": problem}
            for name, problem in self.problems.items()
        }
        return {"status": "ok" if self.ok else "unavailable", "checks": checks}


class Probe:
    """Named checks that together say whether the service is live, or ready."""

    def __init__(
        self,
        name: str,
        timeout_s: float = CHECK_TIMEOUT_S,
        on_verdict: Callable[[Verdict], None] | None = None,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._checks: dict[str, Check] = {}
        self._on_verdict = on_verdict
        self._failing: set[str] = set()

    def register(self, name: str, check: Check) -> None:
        """Add a check. It must be quick (async ones are cut off after `timeout_s`)."""
        if name in self._checks:
            raise ValueError(f"the {self.name} probe already has a check named {name!r}")
        self._checks[name] = check

    @property
    def checks(self) -> tuple[str, ...]:
        return tuple(self._checks)

    async def evaluate(self) -> Verdict:
        names = list(self._checks)
        problems = await asyncio.gather(*(self._run(name, self._checks[name]) for name in names))
        verdict = Verdict(self.name, dict(zip(names, problems, strict=True)))
        self._report(verdict)
        return verdict

    async def _run(self, name: str, check: Check) -> Problem:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.timeout_s)
        except TimeoutError:
            return f"the {name} check did not answer within {self.timeout_s:g}s"
        except Exception as error:
            log.warning("the %s check raised", name, exc_info=error)
            return f"the {name} check failed: {type(error).__name__}: {error}"
        return result

    def _report(self, verdict: Verdict) -> None:
        """Log each check that starts failing (with its problem) or passes again."""
        if self._on_verdict is not None:
            self._on_verdict(verdict)
        failing = {name for name, problem in verdict.problems.items() if problem is not None}
        for name in sorted(failing - self._failing):
            log.warning("%s: the %s check fails: %s", self.name, name, verdict.problems[name])
        for name in sorted(self._failing - failing):
            log.info("%s: the %s check passes again", self.name, name)
        self._failing = failing


def every(
    interval_s: float, check: Check, clock: Callable[[], float] = time.monotonic
) -> Callable[[], Awaitable[Problem]]:
    """`check`, run at most once per `interval_s`; in between, its last answer."""
    last: list[tuple[float, Problem]] = []

    async def throttled() -> Problem:
        now = clock()
        if last and now - last[0][0] < interval_s:
            return last[0][1]
        result = check()
        problem = await result if inspect.isawaitable(result) else result
        last[:] = [(now, problem)]
        return problem

    return throttled


def probe_route(probe: Probe) -> GetHandler:
    """GET/HEAD handler answering the probe's verdict: 200 or 503 with the checks as JSON."""

    async def answer(scope: Any) -> AsgiResponse:
        verdict = await probe.evaluate()
        body = json.dumps(verdict.body()).encode()
        return AsgiResponse(body, verdict.status_code, headers={"content-type": "application/json"})

    return get(answer, include_in_schema=False)


def scrape_route(probe: Probe, metrics_app: ASGIApp) -> ASGIApp:
    """`metrics_app` (Prometheus), after evaluating `probe`: its verdict and the progress
    figures it computes are current at every scrape."""

    async def scrape(scope: Scope, receive: Receive, send: Send) -> None:
        await probe.evaluate()
        await metrics_app(scope, receive, send)

    return scrape
