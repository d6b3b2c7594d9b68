"""Stories: `story_key`'s time index becomes a BRIN index (core/stories.py, docs/stories.md).

The hourly upkeep deletes the keys of stories first seen before the oldest live day by `first_at`.
A B-tree on `first_at` took an entry per key: ~1,800 inserts a batch of 256 on the worker's path
under the stories' advisory lock. Keys are written when their story is founded, so the table's
pages follow `first_at`; a BRIN index (one summary per 128 pages) finds the oldest hour's pages as
well and costs next to nothing per insert (the 2 M-story bench: 4,350-4,450 items/s with the B-tree,
4,675-4,705 with BRIN, 4,576-4,723 with no index; docs/stories.md). Where the order is lost (keys of
backfilled old days), the delete falls back to a sequential scan: 6.8 s for an hour's 333,000 keys
of 24 M, inside the upkeep's statement timeout.

Frozen: explicit DDL.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = [
    "DROP INDEX ix_story_key_first_at",
    "CREATE INDEX ix_story_key_first_at ON story_key USING brin (first_at)",
]

DOWNGRADE = [
    "DROP INDEX ix_story_key_first_at",
    "CREATE INDEX ix_story_key_first_at ON story_key (first_at)",
]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DOWNGRADE:
        op.execute(stmt)
