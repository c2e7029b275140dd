"""Run the real command line (`python -m service ...`) as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys

from service.config.settings import Settings
from testbed.environment import settings_env
from tests.support.consumer import ROOT
from tests.support.services import PostgresEndpoint


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
    """`python -m service ARGS` in `env`, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_service(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`python -m service ARGS` in `env`, in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    settings: Settings, *args: str, timeout: float = 120.0, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` with `settings` in the environment (plus `env` overrides)."""
    environment = settings_env(settings)
    environment.update({name.upper(): value for name, value in env.items()})
    return run_service(environment, *args, timeout=timeout)
