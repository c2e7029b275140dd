"""Least privilege: the consumer's role may run its own statements, and nothing more.

Migrations run as the schema owner (POSTGRES_MIGRATION_USER). After every migration run, still
under the migration lock and in the same transaction, the owner sets the consumer's role
(POSTGRES_USER) to exactly: USAGE on the schema, and on each table or sequence the owner owns
there the privileges the schema's revision declares, nothing on the others. No CREATE, ALTER,
DROP, TRUNCATE, REFERENCES or TRIGGER, and no TEMPORARY on the database.

Which privileges: the newest revision at or below the database's head that declares
`consumer_privileges` in its file (next to `compatible_with`: table or sequence -> the
privileges the consumer's statements need on it). A revision is history, so a later change of
the grants is a new revision, and a downgrade below it gives the older grants back. Below the
first revision that declares any (3c5f0a9d2b71 and older): the grants those releases made,
read/write on every table of the models and read-only on the tables recording the revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from service.postgres.models import Base, SchemaCompatibility

Privileges = Mapping[str, Sequence[str]]

READ_ONLY_TABLES = ("alembic_version", SchemaCompatibility.__tablename__)
WRITABLE_TABLES = tuple(
    sorted(name for name in Base.metadata.tables if name not in READ_ONLY_TABLES)
)
# What a declaration may grant: the consumer reads and writes rows, it never changes the schema.
ALLOWED = {
    "TABLE": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}),
    "SEQUENCE": frozenset({"USAGE", "SELECT", "UPDATE"}),
}

# Tables ('r', 'p') and sequences ('S') the migrating role owns in the schema: the objects
# whose privileges it can set.
_OWNED = text(
    "SELECT c.relname, c.relkind FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'S') "
    "AND pg_get_userbyid(c.relowner) = current_user"
)
# Sequences that belong to one of `tables` (a serial column's): the releases before
# declarations granted them with their table.
_SEQUENCES_OF = text(
    "SELECT DISTINCT s.relname FROM pg_class s "
    "JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid "
    "JOIN pg_class t ON d.refobjid = t.oid "
    "JOIN pg_namespace n ON n.oid = s.relnamespace "
    "WHERE s.relkind = 'S' AND n.nspname = :schema AND t.relname = ANY(:tables)"
)


class RoleMissing(RuntimeError):
    """The consumer's role does not exist, so it cannot be granted anything."""


class InvalidDeclaration(ValueError):
    """A revision's `consumer_privileges` grants something the consumer must never have."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def declared_privileges(script: ScriptDirectory, heads: Sequence[str]) -> Privileges | None:
    """The `consumer_privileges` of the newest revision at or below `heads` that declares
    them; None when none does (the releases before declarations)."""
    for item in script.iterate_revisions(tuple(heads), "base"):
        declared = getattr(item.module, "consumer_privileges", None)
        if declared is not None:
            return dict(declared)
    return None


def undeclared_privileges(existing: Iterable[str], sequences: Iterable[str]) -> Privileges:
    """The grants of the releases before declarations, on the objects that exist."""
    present = set(existing)
    granted: dict[str, Sequence[str]] = {
        name: ("SELECT", "INSERT", "UPDATE", "DELETE")
        for name in WRITABLE_TABLES
        if name in present
    }
    granted.update({name: ("SELECT",) for name in READ_ONLY_TABLES if name in present})
    granted.update({name: ("USAGE", "SELECT") for name in sequences})
    return granted


def grant_statements(
    role: str,
    schema: str,
    database: str,
    owned: Mapping[str, str],
    privileges: Privileges,
) -> list[str]:
    """The SQL that leaves `role` with exactly `privileges` on the `owned` objects (name ->
    "TABLE" or "SEQUENCE") of `schema`, nothing on the other owned ones, and no TEMPORARY on
    `database` of its own (the PUBLIC grant is revision 82a68c906ffc's to revoke)."""
    who = quote_ident(role)
    statements = [f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {who}"]
    for name, kind in sorted(owned.items()):
        target = f"{kind} {quote_ident(schema)}.{quote_ident(name)}"
        statements.append(f"REVOKE ALL ON {target} FROM {who}")
        wanted = [privilege.upper() for privilege in privileges.get(name, ())]
        if not wanted:
            continue
        if forbidden := sorted(set(wanted) - ALLOWED[kind]):
            raise InvalidDeclaration(
                f"consumer_privileges grants {', '.join(forbidden)} on {kind.lower()} {name}; "
                f"the consumer's role may only have {', '.join(sorted(ALLOWED[kind]))} there"
            )
        statements.append(f"GRANT {', '.join(wanted)} ON {target} TO {who}")
    statements.append(f"REVOKE TEMPORARY ON DATABASE {quote_ident(database)} FROM {who}")
    return statements


def grant_consumer_role(
    connection: Connection, role: str, declared: Privileges | None
) -> dict[str, tuple[str, ...]]:
    """Leave `role` exactly `declared` (or the undeclared releases' grants) on the objects
    that exist now; return what it was granted, object by object. Idempotent: run it after
    every upgrade or downgrade."""
    if connection.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}) is None:
        raise RoleMissing(
            f"the consumer's role {role!r} (POSTGRES_USER) does not exist; create it "
            "(scripts/local-stack up does, and so does docker-compose's postgres init script) "
            "or set POSTGRES_USER to the role the consumer logs in as"
        )
    schema = str(connection.scalar(text("SELECT current_schema()")))
    database = str(connection.scalar(text("SELECT current_database()")))
    owned = {
        str(name): "SEQUENCE" if kind == "S" else "TABLE"
        for name, kind in connection.execute(_OWNED, {"schema": schema})
    }
    if declared is None:
        tables = [name for name, kind in owned.items() if kind == "TABLE"]
        writable = [name for name in WRITABLE_TABLES if name in tables]
        sequences = connection.scalars(_SEQUENCES_OF, {"schema": schema, "tables": writable})
        declared = undeclared_privileges(tables, sorted(sequences))
    for statement in grant_statements(role, schema, database, owned, declared):
        connection.execute(text(statement))
    return {name: tuple(declared[name]) for name in sorted(owned) if declared.get(name)}


def describe(granted: Mapping[str, Sequence[str]]) -> str:
    """`products (SELECT, INSERT), ...` for the migration's log line."""
    return ", ".join(f"{name} ({', '.join(privileges)})" for name, privileges in granted.items())
