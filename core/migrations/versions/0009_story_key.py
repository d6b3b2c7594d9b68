"""Stories: one band-key table instead of six day slots (core/stories.py).

- `story_key (band, slot, story_id, day, first_at)`, primary key (band): a band key's story (the
  first story within the horizon to have it; the story's slot and first day say where its `story`
  row is). A batch's keys are one `= ANY` scan of one B-tree instead of one per day slot
  (measured on a 2 M-story index: 10-21 ms against 47-85 ms for 3,000 keys, docs/stories.md);
  the key alone in the index (514 MB for 24 M keys, against 1,352 MB with the other columns
  included) because most probes find nothing and only a hit reads the row. Keys of stories past the horizon are taken over by a new story that has them
  and deleted by the hourly upkeep (`ix_story_key_first_at`), so the table stays bounded by the
  horizon; `story` itself keeps its day slots and their TRUNCATE.
- The keys of `story_band` move over (per key, the story that had it last), then `story_band`
  goes. Downgrade: the reverse.

Frozen: explicit DDL.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SLOTS = 6

UPGRADE = [
    """CREATE TABLE story_key (
        band BIGINT NOT NULL,
        slot SMALLINT NOT NULL,
        story_id VARCHAR(256) NOT NULL,
        day DATE NOT NULL,
        first_at TIMESTAMP WITH TIME ZONE NOT NULL,
        CONSTRAINT pk_story_key PRIMARY KEY (band)
    )""",
    """INSERT INTO story_key (band, slot, story_id, day, first_at)
       SELECT DISTINCT ON (band) band, slot, story_id, day, first_at FROM story_band ORDER BY band, first_at DESC""",
    "CREATE INDEX ix_story_key_first_at ON story_key (first_at)",
    "DROP TABLE story_band",
]

DOWNGRADE = [
    """CREATE TABLE story_band (
        slot SMALLINT NOT NULL,
        band BIGINT NOT NULL,
        story_id VARCHAR(256) NOT NULL,
        day DATE NOT NULL,
        first_at TIMESTAMP WITH TIME ZONE NOT NULL,
        CONSTRAINT pk_story_band PRIMARY KEY (slot, band)
    ) PARTITION BY LIST (slot)""",
    *(f"CREATE TABLE story_band_s{i} PARTITION OF story_band FOR VALUES IN ({i})" for i in range(SLOTS)),
    "CREATE INDEX ix_story_band_band ON story_band (band) INCLUDE (slot, story_id, first_at, day)",
    "CREATE INDEX ix_story_band_day ON story_band (day)",
    "INSERT INTO story_band (slot, band, story_id, day, first_at) SELECT slot, band, story_id, day, first_at FROM story_key",
    "DROP TABLE story_key",
]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DOWNGRADE:
        op.execute(stmt)
