"""products fillfactor for HOT updates

Sets `products`' fillfactor to 80: new pages keep a fifth free, so a product's next version
(every applied event rewrites its row) fits on the same page as a HOT update, which adds no
entry to the primary key's index. Measured on a 5,000-event batch over 50,000 products
(EXPLAIN (ANALYZE, BUFFERS, WAL)): the UPDATE of 4,377 rows wrote 13,138 WAL records and
touched 28,660 buffers at fillfactor 100, 4,377 and 10,285 at 80.

Expand-only: a storage parameter, no data changed, no rewrite (it applies to pages filled
from now on; `VACUUM FULL products` applies it to the existing ones, under an exclusive lock).
Code of any revision runs on it unchanged.

Revision ID: 3c5f0a9d2b71
Revises: ee176b383ef9
Create Date: 2026-11-26 12:00:00.000000+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3c5f0a9d2b71"
down_revision: str | Sequence[str] | None = "ee176b383ef9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# What this revision's downgrade deletes (`migrate --downgrade` names it first, and
# runs it only with --yes); None: no data.
downgrade_drops: str | None = None
# Expand-only: the release before this one (head 7ef928cf46c7) runs on this schema unchanged.
compatible_with: str = "7ef928cf46c7"

FILLFACTOR = 80


def upgrade() -> None:
    op.execute(f"ALTER TABLE products SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    op.execute("ALTER TABLE products RESET (fillfactor)")
