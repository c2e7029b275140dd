"""consumer bookkeeping tables

Revision ID: 7ef928cf46c7
Revises: 56e1b2ec9428
Create Date: 2026-11-25 00:07:13.447178+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7ef928cf46c7"
down_revision: str | Sequence[str] | None = "56e1b2ec9428"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# What this revision's downgrade deletes (`migrate --downgrade` names it first, and
# runs it only with --yes); None: no data.
downgrade_drops: str | None = (
    "the consumer_offsets table (the stored positions: a consumer started after it re-reads "
    "each partition from KAFKA_TOPIC's log start) and the processed_events table"
)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "consumer_offsets",
        sa.Column("group_id", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition", name=op.f("pk_consumer_offsets")),
    )
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )
    op.create_index(
        "ix_processed_events_processed_at", "processed_events", ["processed_at"], unique=False
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_processed_events_processed_at", table_name="processed_events")
    op.drop_table("processed_events")
    op.drop_table("consumer_offsets")
