"""schema compatibility marker

Adds `schema_compatibility`, where every migration run records the schema's revision and the
oldest code head that may run on it (migrations/env.py writes it; MIGRATIONS.md). From this
revision on, a release starts on a database newer than its own head when that record says it
may. Expand only: the previous release (head 7ef928cf46c7) does not see the new table.

Revision ID: 7ad30d479838
Revises: 7ef928cf46c7
Create Date: 2026-11-25 18:00:29.254731+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7ad30d479838"
down_revision: str | Sequence[str] | None = "7ef928cf46c7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# What this revision's downgrade deletes (`migrate --downgrade` names it first, and
# runs it only with --yes); None: no data.
downgrade_drops: str | None = "the schema_compatibility table (recreated by the next upgrade)"

# Expand/contract (MIGRATIONS.md): the oldest code head that still works on this schema.
compatible_with: str = "7ef928cf46c7"


def upgrade() -> None:
    op.create_table(
        "schema_compatibility",
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("min_code_revision", sa.String(length=64), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_schema_compatibility")),
    )


def downgrade() -> None:
    op.drop_table("schema_compatibility")
