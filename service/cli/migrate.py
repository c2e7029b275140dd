"""`migrate`: bring the schema up to a revision, or down to one, naming first the data each
step of a downgrade deletes (and deleting data only with --yes)."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command

from service.cli.exit_codes import CommandError, ExitCode
from service.config.settings import DatabaseSettings
from service.postgres.downgrade_plan import DowngradePlanned
from service.postgres.schema_gate import alembic_config


def migrate(
    settings: DatabaseSettings, revision: str, downgrade: bool, yes: bool, dry_run: bool
) -> int:
    config = alembic_config()
    config.attributes["settings"] = settings  # migrations/env.py uses these, not its own
    # Logging is already set up (LOG_LEVEL, LOG_FORMAT): alembic.ini's must not replace it.
    config.attributes["configure_logger"] = False
    if not downgrade:
        if dry_run:
            raise CommandError(
                "--dry-run lists the steps of a downgrade; add --downgrade REV", ExitCode.USAGE
            )
        _refused_declaration(lambda: command.upgrade(config, revision))
        return ExitCode.OK
    if revision == "head":
        raise CommandError(
            "name the revision to go down to; migrate --downgrade REV", ExitCode.USAGE
        )
    config.attributes["dry_run"] = dry_run
    config.attributes["allow_dropping_data"] = yes
    try:
        _refused_declaration(lambda: command.downgrade(config, revision))
    except DowngradePlanned as plan:
        for step in plan.steps:
            print(step.describe())
        if plan.dry_run:
            print("dry run: nothing changed")
            return ExitCode.OK
        raise CommandError(
            f"going down to {revision} drops the data listed above; nothing changed; run it "
            "again with --yes to drop it (back it up first), or --dry-run to list only",
            ExitCode.REFUSED,
        ) from None
    return ExitCode.OK


def _refused_declaration(run: Callable[[], None]) -> None:
    """Run a migration; migrations/env.py refuses a wrong compatibility declaration or a
    missing role by exiting with its message (as the alembic command line shows it)."""
    try:
        run()
    except SystemExit as stop:
        if isinstance(stop.code, str):
            raise CommandError(stop.code, ExitCode.REFUSED) from None
        raise
