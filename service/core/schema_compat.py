"""Which code may run on which schema: the expand/contract policy as pure functions.

Every revision declares the oldest code head that still works on the schema it leaves
(`compatible_with` in its file; MIGRATIONS.md). Migrations record the result in the database
(`schema_compatibility`), so code that does not know a newer revision can still decide from
the database alone whether it may run on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIGRATE = "python -m service migrate"


class IncompatibleDeclaration(ValueError):
    """A revision names a `compatible_with` that is not itself or one of its ancestors."""


def oldest_compatible_code(lineage: Sequence[tuple[str, str | None]]) -> str:
    """The oldest code head that may run on the schema at the last revision of `lineage`.

    `lineage` lists (revision, its declared `compatible_with`) from the first revision to the
    one the database is at. A revision that declares nothing is compatible only with itself
    (a contract). One revision cannot widen what an earlier one narrowed: a contract stays in
    force until code newer than it is the oldest allowed.
    """
    if not lineage:
        raise ValueError("an empty lineage has no compatible code")
    position = {revision: index for index, (revision, _) in enumerate(lineage)}
    oldest = 0
    for index, (revision, declared) in enumerate(lineage):
        target = revision if declared is None else declared
        where = position.get(target)
        if where is None or where > index:
            raise IncompatibleDeclaration(
                f"revision {revision} declares compatible_with={declared!r}, which is not "
                "itself or one of its ancestors; name the head of the release it must keep "
                "working with (MIGRATIONS.md)"
            )
        oldest = max(oldest, where)
    return lineage[oldest][0]


@dataclass(frozen=True)
class Marker:
    """What the migrations recorded: the schema's revision and the oldest code it accepts."""

    revision: str
    min_code_revision: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str


def judge(
    code_lineage: Sequence[str], db_revisions: Sequence[str], marker: Marker | None
) -> Verdict:
    """May code whose revisions are `code_lineage` (oldest first, its head last) run on a
    database whose alembic_version holds `db_revisions`?"""
    head = code_lineage[-1] if code_lineage else None
    if not db_revisions:
        return Verdict(False, f"the database has no schema yet; run `{MIGRATE}` first")
    if len(db_revisions) > 1:
        return Verdict(
            False,
            f"the database is at several revisions at once ({', '.join(sorted(db_revisions))}); "
            f"merge the branches and run `{MIGRATE}`",
        )
    current = db_revisions[0]
    if current == head:
        return Verdict(True, f"database schema is at this release's head {head}")
    if current in code_lineage:
        return Verdict(
            False,
            f"database schema is at revision {current}, behind this release's head {head}; "
            f"run `{MIGRATE}` (alembic upgrade head) first",
        )
    rollback = (
        f"deploy the release that has revision {current}, or downgrade the database with that "
        f"release (`{MIGRATE} --downgrade {head}`)"
    )
    if marker is None or marker.revision != current:
        return Verdict(
            False,
            f"database schema is at revision {current}, which this release (head {head}) does "
            "not know, and the database records no compatibility for it; " + rollback,
        )
    if marker.min_code_revision in code_lineage:
        return Verdict(
            True,
            f"database schema is at revision {current}, newer than this release's head {head}; "
            f"it stays compatible with code from revision {marker.min_code_revision} on "
            "(expand/contract, MIGRATIONS.md)",
        )
    return Verdict(
        False,
        f"database schema is at revision {current}, newer than this release (head {head}), "
        f"and needs code from revision {marker.min_code_revision} on; " + rollback,
    )
