"""Read and write the compatibility marker (`schema_compatibility`) next to alembic_version."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.schema_compat import Marker, oldest_compatible_code
from service.postgres.models import SchemaCompatibility

TABLE = SchemaCompatibility.__tablename__


def declared_lineage(script: ScriptDirectory, revision: str) -> list[tuple[str, str | None]]:
    """(revision, its `compatible_with`) from the first revision up to `revision`."""
    chain = [
        (item.revision, getattr(item.module, "compatible_with", None))
        for item in script.walk_revisions(base="base", head=revision)
    ]
    return chain[::-1]


def expected_marker(script: ScriptDirectory, heads: tuple[str, ...]) -> Marker | None:
    """The marker a database at `heads` records; None on branches (no row)."""
    if len(heads) != 1:
        return None
    return Marker(heads[0], oldest_compatible_code(declared_lineage(script, heads[0])))


def marker_is_current(
    connection: Connection, script: ScriptDirectory, heads: tuple[str, ...]
) -> bool:
    """Whether the marker table already holds exactly what `record_compatibility` would write
    (reads only). True below the revision that creates the table: nothing to write there."""
    if connection.scalar(text("SELECT to_regclass(:table)"), {"table": TABLE}) is None:
        return True
    rows = connection.execute(text(f"SELECT revision, min_code_revision FROM {TABLE}")).all()
    expected = expected_marker(script, heads)
    return [Marker(row.revision, row.min_code_revision) for row in rows] == (
        [] if expected is None else [expected]
    )


def record_compatibility(
    connection: Connection, script: ScriptDirectory, heads: tuple[str, ...]
) -> Marker | None:
    """Rewrite the marker for the revision the database is now at (inside the migration's
    transaction). Nothing to write below the revision that creates the table, or on branches."""
    if connection.scalar(text("SELECT to_regclass(:table)"), {"table": TABLE}) is None:
        return None
    connection.execute(text(f"DELETE FROM {TABLE}"))
    marker = expected_marker(script, heads)
    if marker is None:
        return None
    connection.execute(
        text(f"INSERT INTO {TABLE} (revision, min_code_revision) VALUES (:revision, :minimum)"),
        {"revision": marker.revision, "minimum": marker.min_code_revision},
    )
    return marker


async def read_schema_state(connection: AsyncConnection) -> tuple[list[str], Marker | None]:
    """The revisions in alembic_version and the marker, each empty when its table is missing."""
    revisions: list[str] = []
    if await connection.scalar(text("SELECT to_regclass('alembic_version')")) is not None:
        rows = await connection.scalars(text("SELECT version_num FROM alembic_version"))
        revisions = list(rows)
    marker = None
    if await connection.scalar(text("SELECT to_regclass(:table)"), {"table": TABLE}) is not None:
        row = (
            await connection.execute(text(f"SELECT revision, min_code_revision FROM {TABLE}"))
        ).first()
        if row is not None:
            marker = Marker(row.revision, row.min_code_revision)
    return revisions, marker
