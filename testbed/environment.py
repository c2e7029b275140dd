"""A child process's environment: this one's, with the service's settings written over it."""

from __future__ import annotations

import os

from service.config.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the variable the service reads (secrets in clear), HTTP_PORT=0 (a free
    port) and unbuffered output."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = "" if value is None else str(value)
    env["HTTP_PORT"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env
