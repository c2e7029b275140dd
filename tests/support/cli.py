"""Run `python -m service ...` as an operator would, against a chosen database and roles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.services import PostgresEndpoint

ROOT = Path(__file__).resolve().parents[2]


def service_env(
    app: PostgresEndpoint, owner: PostgresEndpoint | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a service process: the consumer logs in as `app`, migrations as
    `owner` (default: `app`, one role for both)."""
    owner = owner or app
    env = dict(os.environ)
    env.update(
        POSTGRES_HOST=app.host,
        POSTGRES_PORT=str(app.port),
        POSTGRES_USER=app.user,
        POSTGRES_PASSWORD=app.password,
        POSTGRES_DB=app.database,
        POSTGRES_MIGRATION_USER=owner.user,
        POSTGRES_MIGRATION_PASSWORD=owner.password,
        PYTHONUNBUFFERED="1",
        HTTP_PORT="0",
    )
    env.setdefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    env.pop("ALEMBIC_CONFIG", None)
    env.update(extra)
    return env


def run_service(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_service(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
