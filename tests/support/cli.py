"""Run the real command line (`python -m service ...`) as an operator would."""

from __future__ import annotations

import subprocess
import sys

from service.config import Settings
from tests.support.consumer import ROOT, settings_env


def run_cli(
    settings: Settings, *args: str, timeout: float = 120.0, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` with `settings` in the environment (plus `env` overrides)."""
    environment = settings_env(settings)
    environment.update({name.upper(): value for name, value in env.items()})
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
