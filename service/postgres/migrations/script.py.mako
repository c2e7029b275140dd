"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}

# Expand/contract (MIGRATIONS.md): the oldest code head that still works on the schema this
# revision leaves. An expand-only revision (new nullable columns, tables, indexes) names the
# head of the release before it; a contract (drop, rename, NOT NULL, type change) keeps its
# own id, so only code that knows it may run.
compatible_with: str = ${repr(up_revision)}

# What downgrade() deletes, named to the operator before it runs (`migrate --downgrade` runs a
# step that deletes data only with --yes): e.g. "products.sku". None: it deletes no data.
downgrade_drops: str | None = None


def upgrade() -> None:
    """Upgrade schema."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Downgrade schema."""
    ${downgrades if downgrades else "pass"}
