"""Fixtures of the container checks (scripts/container-test): a Docker Compose project of the
repository's docker-compose.yml, with tests/containers/compose.test.yml on top.

They need a Docker engine and Compose v2, which scripts/container-test provides (DOCKER_HOST,
DOCKER_CONFIG); they fail, never skip, without them. Each project has a name of its own and is
removed with its volumes at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HOW_TO = "run the container checks with scripts/container-test (it provides Docker and Compose)"
# The compose file and the image read these; the test shell may export the local stack's.
PASSED_THROUGH = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "TMPDIR")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Compose:
    """`docker compose` on one project of the repository's compose file."""

    project: str
    files: list[Path]
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    def run(
        self,
        *args: str,
        timeout: float = 600,
        check: bool = True,
        stdin: str | None = None,
        files: Sequence[Path] = (),
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-p", self.project]
        for path in [*self.files, *files]:
            command += ["-f", str(path)]
        command += args
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.log.append(f"$ {' '.join(args)} -> {result.returncode}\n{result.stderr[-2000:]}")
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def container_id(self, service: str, index: int = 1) -> str:
        ids = self.run("ps", "--all", "--quiet", service).stdout.split()
        listed = [self.inspect(one) for one in ids]
        chosen = [
            item
            for item in listed
            if item["Config"]["Labels"].get("com.docker.compose.container-number") == str(index)
        ]
        assert chosen, f"no container {service} #{index} in project {self.project}"
        return str(chosen[0]["Id"])

    def state(self, service: str, index: int = 1) -> dict[str, Any]:
        return self.inspect(self.container_id(service, index))

    def inspect(self, what: str) -> dict[str, Any]:
        out = docker("inspect", what, env=self.env).stdout
        return dict(json.loads(out)[0])

    def exec(self, service: str, *command: str, stdin: str | None = None, check: bool = True):  # type: ignore[no-untyped-def]
        return self.run("exec", "-T", service, *command, stdin=stdin, check=check, timeout=120)

    def wait_healthy(self, service: str, timeout: float = 240, index: int = 1) -> float:
        """Seconds until Docker reports the service's container healthy (its HEALTHCHECK)."""
        started = time.monotonic()
        status = "?"
        while time.monotonic() - started < timeout:
            state = self.state(service, index)["State"]
            status = state.get("Health", {}).get("Status", state["Status"])
            if status == "healthy":
                return time.monotonic() - started
            assert state["Status"] in {"created", "running", "restarting"}, state
            time.sleep(2)
        logs = self.run("logs", "--tail", "60", service, check=False).stdout
        raise AssertionError(f"{service} not healthy after {timeout} s (last: {status}):\n{logs}")

    def volumes(self) -> list[str]:
        out = docker(
            "volume",
            "ls",
            "--quiet",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            env=self.env,
        ).stdout
        return sorted(out.split())


def docker(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
    # The host's CA bundle reaches pip in the build as a secret (compose.test.yml), if present.
    bundle = os.environ.get("BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    env["BUILD_CA_BUNDLE"] = bundle if Path(bundle).is_file() else "/dev/null"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def docker_env() -> dict[str, str]:
    if shutil.which("docker") is None:
        pytest.fail(f"no docker CLI; {HOW_TO}", pytrace=False)
    env = clean_env()
    for probe in (["docker", "info"], ["docker", "compose", "version"]):
        if subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode != 0:
            pytest.fail(f"`{' '.join(probe)}` fails; {HOW_TO}", pytrace=False)
    return env


def new_project(prefix: str, *overrides: Path, **extra: str) -> Compose:
    return Compose(
        project=f"{prefix}-{uuid.uuid4().hex[:6]}",
        files=[ROOT / "docker-compose.yml", HERE / "compose.test.yml", *overrides],
        env=clean_env(CONSUMER_TEST_PORT=str(free_port()), **extra),
    )


@pytest.fixture(scope="module")
def stack(docker_env: dict[str, str]) -> Iterator[Compose]:
    """The compose project of one test module; removed with its volumes afterwards."""
    compose = new_project("inventory-sink-ct")
    try:
        yield compose
    finally:
        compose.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
        left = compose.volumes()
        assert not left, f"volumes left behind: {left}"
