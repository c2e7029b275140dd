"""consumer offsets topic id

Adds the nullable `consumer_offsets.topic_id`: the Kafka topic id a stored position was taken
in, so a topic that was deleted and created again (or a new Kafka cluster) is recognised and
its new records are never taken for ones already applied (see service/core/position_verdict.py).

Expand-only: one nullable column, no data changed, no rewrite of the table and only a brief
lock. Code that does not know the column keeps working (it never names it), and rows written
by such code simply have no topic id yet: the consumer records it on its next assignment.

Revision ID: ee176b383ef9
Revises: 7ad30d479838
Create Date: 2026-11-26 09:00:00.000000+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "ee176b383ef9"
down_revision: str | Sequence[str] | None = "7ad30d479838"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# What this revision's downgrade deletes (`migrate --downgrade` names it first, and
# runs it only with --yes); None: no data.
downgrade_drops: str | None = (
    "consumer_offsets.topic_id (a topic deleted and created again is then not recognised)"
)

# Expand-only: the release before this one (head 7ef928cf46c7) runs on this schema unchanged.
compatible_with: str = "7ef928cf46c7"


def upgrade() -> None:
    op.add_column("consumer_offsets", sa.Column("topic_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("consumer_offsets", "topic_id")
