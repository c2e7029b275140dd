"""consumer grants exactly its statements

The consumer's role (POSTGRES_USER) had SELECT, INSERT, UPDATE and DELETE on every table of the
models; its statements (the consumer's and every CLI command's) never delete products or
positions and never update processed event ids. From this revision on it gets, table by table,
what those statements need (`consumer_privileges` below; `migrate` applies it after the run,
service/postgres/grants.py) and no sequence (no column takes its value from one).

It also revokes PostgreSQL's default TEMPORARY privilege on the database from PUBLIC: no
statement of the service creates a temporary table, and whoever holds the consumer's password
could fill the server's disk with them, whatever its table grants. Database privileges are
per database, and this is the one step that runs, as the database's owner, on every database
the service uses, existing ones included (the role scripts run only where they make the
database: local-stack, or compose on an empty volume), so it lives here. The database's owner
keeps TEMPORARY; grant it by name to any other role that needs it.

No data changed. Code of the release before (head 7ef928cf46c7) never issued the privileges
taken away, so it runs on this schema unchanged. The downgrade grants TEMPORARY to PUBLIC
again, and `migrate` gives the consumer the previous grants back (no revision below this one
declares any).

Revision ID: 82a68c906ffc
Revises: 3c5f0a9d2b71
Create Date: 2026-12-07 09:00:00.000000+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "82a68c906ffc"
down_revision: str | Sequence[str] | None = "3c5f0a9d2b71"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# What this revision's downgrade deletes (`migrate --downgrade` names it first, and
# runs it only with --yes); None: no data.
downgrade_drops: str | None = None
# Expand-only: the release before this one (head 7ef928cf46c7) runs on this schema unchanged.
compatible_with: str = "7ef928cf46c7"

# Least privilege (MIGRATIONS.md, Roles): what the consumer's statements need, per object.
# tests/integration/test_statement_privileges.py checks it against every statement the
# consumer and the CLI send, both ways.
consumer_privileges: dict[str, tuple[str, ...]] = {
    "products": ("SELECT", "INSERT", "UPDATE"),
    "consumer_offsets": ("SELECT", "INSERT", "UPDATE"),
    "processed_events": ("SELECT", "INSERT", "DELETE"),
    "alembic_version": ("SELECT",),
    "schema_compatibility": ("SELECT",),
}


def upgrade() -> None:
    op.execute(
        "DO $$ BEGIN EXECUTE format("
        "'REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()); END $$"
    )


def downgrade() -> None:
    op.execute(
        "DO $$ BEGIN EXECUTE format("
        "'GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database()); END $$"
    )
