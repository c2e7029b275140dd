"""Least privilege: the consumer's role may run its own statements, and nothing more.

Migrations run as the schema owner (POSTGRES_MIGRATION_USER). After every migration run, still
under the migration lock and in the same transaction, the owner sets the consumer's role
(POSTGRES_USER) to exactly: USAGE on the schema, and on each table or sequence the owner owns
there the privileges the schema's revision declares, nothing on the others. No CREATE, ALTER,
DROP, TRUNCATE, REFERENCES or TRIGGER, and no TEMPORARY on the database. A run that changes no
revision first reads whether the role already holds exactly that (`holds_exactly`) and grants
only when it does not: a new POSTGRES_USER or a grant changed by hand is set right, and a role
already right costs no write (so such a run succeeds on a read-only server or a standby).

Which privileges: the newest revision at or below the database's head that declares
`consumer_privileges` in its file (next to `compatible_with`: table or sequence -> the
privileges the consumer's statements need on it). A revision is history, so a later change of
the grants is a new revision, and a downgrade below it gives the older grants back. Below the
first revision that declares any (3c5f0a9d2b71 and older): the grants those releases made,
read/write on every table of the models and read-only on the tables recording the revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
# The privileges `role` holds on those objects by grants of its own (not PUBLIC's), each with
# whether it may grant them on: what `grant_statements` sets, read back.
_HELD = text(
    "SELECT c.relname, a.privilege_type, a.is_grantable FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault("
    "CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner)))"
    " AS a(grantor, grantee, privilege_type, is_grantable) "
    "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'S') "
    "AND pg_get_userbyid(c.relowner) = current_user "
    "AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = :role)"
)
_HOLDS_SCHEMA_USAGE = text(
    "SELECT EXISTS (SELECT 1 FROM pg_namespace n "
    "CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner)))"
    " AS a(grantor, grantee, privilege_type, is_grantable) "
    "WHERE n.nspname = :schema AND a.privilege_type = 'USAGE' "
    "AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = :role))"
)
_HOLDS_TEMPORARY = text(
    "SELECT EXISTS (SELECT 1 FROM pg_database d "
    "CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba)))"
    " AS a(grantor, grantee, privilege_type, is_grantable) "
    "WHERE d.datname = current_database() AND a.privilege_type = 'TEMPORARY' "
    "AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = :role))"
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


@dataclass(frozen=True)
class ConsumerGrants:
    """What the consumer's `role` is to hold in this database: USAGE on `schema`; on each
    object the migrating role owns there (name -> "TABLE" or "SEQUENCE" in `owned`) exactly
    its `privileges` (none for most); no TEMPORARY on `database` of its own."""

    role: str
    schema: str
    database: str
    owned: Mapping[str, str]
    privileges: Privileges


def exact_privileges(
    owned: Mapping[str, str], privileges: Privileges
) -> dict[str, tuple[str, ...]]:
    """Each owned object -> the privileges the role is to hold on it, upper case (empty: none);
    a declaration granting more than rows raises InvalidDeclaration."""
    exact: dict[str, tuple[str, ...]] = {}
    for name, kind in sorted(owned.items()):
        wanted = tuple(privilege.upper() for privilege in privileges.get(name, ()))
        if forbidden := sorted(set(wanted) - ALLOWED[kind]):
            raise InvalidDeclaration(
                f"consumer_privileges grants {', '.join(forbidden)} on {kind.lower()} {name}; "
                f"the consumer's role may only have {', '.join(sorted(ALLOWED[kind]))} there"
            )
        exact[name] = wanted
    return exact


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
    for name, wanted in exact_privileges(owned, privileges).items():
        target = f"{owned[name]} {quote_ident(schema)}.{quote_ident(name)}"
        statements.append(f"REVOKE ALL ON {target} FROM {who}")
        if wanted:
            statements.append(f"GRANT {', '.join(wanted)} ON {target} TO {who}")
    statements.append(f"REVOKE TEMPORARY ON DATABASE {quote_ident(database)} FROM {who}")
    return statements


def consumer_grants(
    connection: Connection, role: str, declared: Privileges | None
) -> ConsumerGrants:
    """What `role` is to hold: `declared` (or the undeclared releases' grants) on the objects
    that exist now. Reads only; a role that does not exist raises RoleMissing, before the
    migration writes anything else."""
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
    return ConsumerGrants(role, schema, database, owned, declared)


def holds_exactly(connection: Connection, grants: ConsumerGrants) -> bool:
    """Whether the role already holds what `grant_statements` would leave it (reads only): the
    same privileges on each owned object, none with a grant option, USAGE on the schema and
    no TEMPORARY of its own."""
    wanted = {
        (name, privilege)
        for name, privileges in exact_privileges(grants.owned, grants.privileges).items()
        for privilege in privileges
    }
    held = connection.execute(_HELD, {"schema": grants.schema, "role": grants.role}).all()
    on_schema = {"schema": grants.schema, "role": grants.role}
    return (
        {(str(name), str(privilege)) for name, privilege, _ in held} == wanted
        and not any(grantable for _, _, grantable in held)
        and bool(connection.scalar(_HOLDS_SCHEMA_USAGE, on_schema))
        and not connection.scalar(_HOLDS_TEMPORARY, {"role": grants.role})
    )


def grant_consumer_role(
    connection: Connection, grants: ConsumerGrants
) -> dict[str, tuple[str, ...]]:
    """Leave the role exactly `grants`; return what it was granted, object by object.
    Idempotent: run it after every upgrade or downgrade."""
    statements = grant_statements(
        grants.role, grants.schema, grants.database, grants.owned, grants.privileges
    )
    for statement in statements:
        connection.execute(text(statement))
    exact = exact_privileges(grants.owned, grants.privileges)
    return {name: privileges for name, privileges in exact.items() if privileges}


def describe(granted: Mapping[str, Sequence[str]]) -> str:
    """`products (SELECT, INSERT), ...` for the migration's log line."""
    return ", ".join(f"{name} ({', '.join(privileges)})" for name, privileges in granted.items())
