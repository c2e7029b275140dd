"""Least privilege: the consumer's role may read and write its tables, and nothing more.

Migrations run as the schema owner (POSTGRES_MIGRATION_USER). After every migration run, still
under the migration lock and in the same transaction, the owner sets the consumer's role
(POSTGRES_USER) to exactly these privileges: USAGE on the schema, SELECT/INSERT/UPDATE/DELETE
on the service's tables (and USAGE/SELECT on their sequences), SELECT on the tables that
record the schema's revision. No CREATE, ALTER, DROP, TRUNCATE, REFERENCES or TRIGGER.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

from service.models import Base, SchemaCompatibility

READ_ONLY_TABLES = ("alembic_version", SchemaCompatibility.__tablename__)
WRITABLE_TABLES = tuple(
    sorted(name for name in Base.metadata.tables if name not in READ_ONLY_TABLES)
)


class RoleMissing(RuntimeError):
    """The consumer's role does not exist, so it cannot be granted anything."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_statements(
    role: str,
    schema: str,
    writable: Iterable[str],
    read_only: Iterable[str],
    sequences: Iterable[str] = (),
) -> list[str]:
    """The SQL that leaves `role` with exactly the consumer's privileges on these objects."""
    who = quote_ident(role)

    def qualified(name: str) -> str:
        return f"{quote_ident(schema)}.{quote_ident(name)}"

    statements = [f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {who}"]
    for table in writable:
        statements.append(f"REVOKE ALL ON TABLE {qualified(table)} FROM {who}")
        statements.append(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {qualified(table)} TO {who}"
        )
    for table in read_only:
        statements.append(f"REVOKE ALL ON TABLE {qualified(table)} FROM {who}")
        statements.append(f"GRANT SELECT ON TABLE {qualified(table)} TO {who}")
    for sequence in sequences:
        statements.append(f"REVOKE ALL ON SEQUENCE {qualified(sequence)} FROM {who}")
        statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {qualified(sequence)} TO {who}")
    return statements


def grant_consumer_role(connection: Connection, role: str) -> list[str]:
    """Grant `role` the consumer's privileges on the tables that exist now; return the
    tables it may write. Idempotent: run it after every upgrade or downgrade."""
    if connection.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}) is None:
        raise RoleMissing(
            f"the consumer's role {role!r} (POSTGRES_USER) does not exist; create it "
            "(scripts/local-stack up does, and so does docker-compose's postgres init script) "
            "or set POSTGRES_USER to the role the consumer logs in as"
        )
    schema = str(connection.scalar(text("SELECT current_schema()")))
    existing = set(
        connection.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
        )
    )
    writable = [name for name in WRITABLE_TABLES if name in existing]
    read_only = [name for name in READ_ONLY_TABLES if name in existing]
    sequences = list(
        connection.scalars(
            text(
                "SELECT DISTINCT s.relname FROM pg_class s "
                "JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid "
                "JOIN pg_class t ON d.refobjid = t.oid "
                "JOIN pg_namespace n ON n.oid = s.relnamespace "
                "WHERE s.relkind = 'S' AND n.nspname = :s AND t.relname = ANY(:tables)"
            ),
            {"s": schema, "tables": writable},
        )
    )
    for statement in grant_statements(role, schema, writable, read_only, sorted(sequences)):
        connection.execute(text(statement))
    return writable
