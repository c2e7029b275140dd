"""Variables that look like the service's settings but that no setting reads: a typo
(`KAFKA_TOPCI=...`) would otherwise be ignored without a word, and the service would run with
the default.

A variable is the service's when it starts with one of `SERVICE_PREFIXES` (every setting
starts with one; tests/unit/config/test_unknown_settings.py holds them to it). Other programs'
variables that share a prefix are in `OTHER_PROGRAMS`, so that they never warn.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values

from service.config.settings import ENV_FILE, Settings

SERVICE_PREFIXES = (
    "POSTGRES_",
    "KAFKA_",
    "LOG_",
    "HTTP_",
    "BATCH_",
    "RETRY_",
    "PROCESSED_EVENT_",
    "MAX_RECORD_",
    "STALL_",
    "PROGRESS_CHECK_",
    "SCHEMA_CHECK_",
    "START_TIMEOUT",
    "ON_POSITION_",
    "ON_RECORDS_",
    "POSITION_CHECK_",
)

OTHER_PROGRAMS = frozenset(
    {
        # Kafka's own scripts (kafka-run-class.sh, kafka-server-start.sh) read these; an
        # operator's shell that runs both keeps them set.
        "KAFKA_HEAP_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_DEBUG",
        "KAFKA_HOME",
        # The postgres image's entrypoint reads these; docker compose reads .env for its
        # interpolation, so one .env may hold them for the database container.
        "POSTGRES_INITDB_ARGS",
        "POSTGRES_INITDB_WALDIR",
        "POSTGRES_HOST_AUTH_METHOD",
        "POSTGRES_PASSWORD_FILE",
        "POSTGRES_USER_FILE",
        "POSTGRES_DB_FILE",
        # Proxies of HTTP clients (curl, urllib, pip): never this service's HTTP server.
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    }
)


def known_settings() -> dict[str, str]:
    """Every variable a setting reads, in upper case, with its field name."""
    return {name.upper(): name for name in Settings.model_fields}


def unknown_settings(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """(variable, the closest setting's variable or None) for each of `names` that has a
    service prefix but that no setting reads, sorted by name."""
    known = known_settings()
    found = []
    for name in sorted({name.upper() for name in names}):
        if name in known or name in OTHER_PROGRAMS or not name.startswith(SERVICE_PREFIXES):
            continue
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        found.append((name, close[0] if close else None))
    return found


def warnings_for(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> list[str]:
    """One line per unknown variable of the environment and of .env (values are never
    shown: they may be secrets)."""
    environ = os.environ if environ is None else environ
    path = Path(ENV_FILE) if env_file is None else env_file
    sources: dict[str, str] = {name: "the environment" for name in environ}
    if path.is_file():
        for name in dotenv_values(path):
            sources.setdefault(name, str(path))
    lines = []
    for name, close in unknown_settings(sources):
        where = next(source for key, source in sources.items() if key.upper() == name)
        hint = f"; did you mean {close}?" if close else "; remove it, or check the spelling"
        lines.append(f"{name} (in {where}) is not a setting of this service{hint}")
    return lines
