"""What a role may do in a database, read from PostgreSQL's ACLs (has_*_privilege: its own
grants, PUBLIC's and its roles'), as (object, privilege) pairs: ("products", "SELECT"),
("schema public", "USAGE"), ("database", "TEMPORARY")."""

from __future__ import annotations

import asyncpg

Grant = tuple[str, str]

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")

_TABLES = """
SELECT c.relname, p.privilege
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest($2::text[]) AS p(privilege)
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND has_table_privilege($1, c.oid, p.privilege)
"""
_SEQUENCES = """
SELECT c.relname, p.privilege
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest($2::text[]) AS p(privilege)
WHERE n.nspname = 'public' AND c.relkind = 'S' AND has_sequence_privilege($1, c.oid, p.privilege)
"""
_SCHEMA = """
SELECT p.privilege FROM unnest(ARRAY['USAGE', 'CREATE']) AS p(privilege)
WHERE has_schema_privilege($1, 'public', p.privilege)
"""
_DATABASE = """
SELECT p.privilege FROM unnest(ARRAY['TEMPORARY', 'CREATE']) AS p(privilege)
WHERE has_database_privilege($1, current_database(), p.privilege)
"""


async def effective_grants(connection: asyncpg.Connection, role: str) -> set[Grant]:
    """Every privilege `role` holds on the public schema's tables and sequences, the schema
    itself and the current database (CONNECT left out: every login needs it)."""
    tables = await connection.fetch(_TABLES, role, list(TABLE_PRIVILEGES))
    sequences = await connection.fetch(_SEQUENCES, role, list(SEQUENCE_PRIVILEGES))
    schema = await connection.fetch(_SCHEMA, role)
    database = await connection.fetch(_DATABASE, role)
    return (
        {(row["relname"], row["privilege"]) for row in [*tables, *sequences]}
        | {("schema public", row["privilege"]) for row in schema}
        | {("database", row["privilege"]) for row in database}
    )
