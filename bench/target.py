"""Where the benchmark runs: the local broker and database, and each run's unique names."""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass

from bench import ROOT
from service.config.settings import Settings, load_settings
from testbed.environment import settings_env

BENCH_DATABASE = "inventory_bench"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class TargetError(RuntimeError):
    """The environment points somewhere the benchmark must not go, or is incomplete."""


@dataclass(frozen=True)
class Target:
    """The service settings for the bench database, plus the database to create it from."""

    base: Settings
    admin_database: str

    @property
    def bootstrap(self) -> str:
        return self.base.kafka_bootstrap_servers

    def dsn(self, database: str | None = None) -> str:
        s = self.base
        return (
            f"postgresql://{s.postgres_user}:{s.postgres_password.get_secret_value()}"
            f"@{s.postgres_host}:{s.postgres_port}/{database or s.postgres_db}"
        )

    def settings(self, **changes: object) -> Settings:
        return self.base.model_copy(update=changes)

    def env(self, settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process (the service or the naive consumer)."""
        env = settings_env(settings)
        env.update(HTTP_PORT="0", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env


def load_target(database: str = BENCH_DATABASE) -> Target:
    """Settings from the environment (or .env), pointed at `database`; loopback only."""
    base = load_settings()
    hosts = [base.postgres_host] + [
        server.rsplit(":", 1)[0].strip("[]") for server in base.kafka_brokers
    ]
    remote = [host for host in hosts if host not in LOOPBACK]
    if remote:
        raise TargetError(
            f"the benchmark only runs against services on 127.0.0.1, not {remote}; "
            'run `eval "$(scripts/local-stack env)"` first'
        )
    admin = base.postgres_db if base.postgres_db != database else "postgres"
    return Target(base=base.model_copy(update={"postgres_db": database}), admin_database=admin)


def run_id() -> str:
    """A short id unique to this invocation, used in topic names and group ids."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def code_state() -> str:
    """The commit under test, and whether service/ differs from it."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "service").splitlines()]
    if not changed:
        return f"code: commit {commit}, service/ clean"
    return f"code: commit {commit} + uncommitted changes in {', '.join(changed)}"
