"""Stories: a story's id is its first event's `source/id` (core.stories.story_id_of), up to 321
characters (source 64 + "/" + id 256), no longer the founder's bare id.

Event ids are unique per source only. With the bare id, two feeds that number their items 1, 2, 3
... founded stories with equal ids: the `story` upsert (primary key slot, story_id) merged them, so
the second feed's item 7 was stored as a copy of the first feed's item 7 (novel false, copies 2)
and counted as a tenth of an item by the detector, whatever either text said.

The columns are widened (varchar to a longer varchar: no table rewrite, no index rebuild). Stored
ids are left as they are: a story first seen before this migration keeps its bare id (its copies
still join it within its 72 h horizon), and the API finds a story's founder by (story_id, novel)
whatever form the id has. Downgrade narrows the columns back to 256 and fails, changing nothing,
if a longer id is stored.

Frozen: explicit DDL.

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("scored_event", "story", "story_key")

UPGRADE = [f"ALTER TABLE {t} ALTER COLUMN story_id TYPE VARCHAR(321)" for t in TABLES]
DOWNGRADE = [f"ALTER TABLE {t} ALTER COLUMN story_id TYPE VARCHAR(256)" for t in TABLES]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DOWNGRADE:
        op.execute(stmt)
