"""Stories (core/stories.py): the shared near-duplicate index and each event's story.

- `story_band`: one row per MinHash band key of a story (the story that first had it, its first
  day and time), keyed by (slot, band); `story`: one row per story (first event's id, first and
  last seen, copies, up to 16 sources, the companies its first event names). Both are
  LIST-partitioned into six slots by the story's first UTC day (day number mod 6): upkeep
  truncates a slot once every day in it is past the 72 h horizon, so the index stays bounded
  without a DELETE over the table.
- `alert` gains `stories` (JSONB): the stories of the alert's window with their copies and sources.
- `scored_event` gains story_id (the first event of its story), novel (first of its story) and
  copies (the story's copies so far, this one included); NULL on rows no one assigned yet
  (`finsent stories backfill` does, resumably, from `story_cursor`).

Frozen: explicit DDL.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SLOTS = 6

UPGRADE = [
    """CREATE TABLE story_band (
        slot SMALLINT NOT NULL,
        band BIGINT NOT NULL,
        story_id VARCHAR(256) NOT NULL,
        day DATE NOT NULL,
        first_at TIMESTAMP WITH TIME ZONE NOT NULL,
        CONSTRAINT pk_story_band PRIMARY KEY (slot, band)
    ) PARTITION BY LIST (slot)""",
    """CREATE TABLE story (
        slot SMALLINT NOT NULL,
        story_id VARCHAR(256) NOT NULL,
        day DATE NOT NULL,
        first_at TIMESTAMP WITH TIME ZONE NOT NULL,
        last_at TIMESTAMP WITH TIME ZONE NOT NULL,
        source VARCHAR(64) NOT NULL,
        keys TEXT[] DEFAULT '{}' NOT NULL,
        copies INTEGER NOT NULL,
        sources TEXT[] DEFAULT '{}' NOT NULL,
        CONSTRAINT pk_story PRIMARY KEY (slot, story_id)
    ) PARTITION BY LIST (slot)""",
    *(f"CREATE TABLE story_band_s{i} PARTITION OF story_band FOR VALUES IN ({i})" for i in range(SLOTS)),
    *(f"CREATE TABLE story_s{i} PARTITION OF story FOR VALUES IN ({i})" for i in range(SLOTS)),
    # the lookup is by band alone (the story's slot is not known before): index-only probes. (A hash
    # index was tried on 2 M stories: no difference measurable on the shared 2 cores, docs/stories.md.)
    "CREATE INDEX ix_story_band_band ON story_band (band) INCLUDE (slot, story_id, first_at, day)",
    "CREATE INDEX ix_story_band_day ON story_band (day)",
    "CREATE INDEX ix_story_day ON story (day)",
    "CREATE INDEX ix_story_last ON story (last_at)",
    "CREATE INDEX ix_story_keys ON story USING gin (keys)",
    "CREATE INDEX ix_story_story_id ON story (story_id)",
    "ALTER TABLE scored_event ADD COLUMN story_id VARCHAR(256)",
    "ALTER TABLE scored_event ADD COLUMN novel BOOLEAN",
    "ALTER TABLE scored_event ADD COLUMN copies INTEGER",
    "CREATE INDEX ix_scored_event_story ON scored_event (story_id, published_at) WHERE story_id IS NOT NULL",
    # an alert's evidence: its window's stories [{story_id, copies, sources}], most copies first
    "ALTER TABLE alert ADD COLUMN stories JSONB DEFAULT '[]' NOT NULL",
    """CREATE TABLE story_cursor (
        name VARCHAR(32) NOT NULL,
        published_at TIMESTAMP WITH TIME ZONE NOT NULL,
        source VARCHAR(64) NOT NULL,
        id VARCHAR(256) NOT NULL,
        rows BIGINT DEFAULT 0 NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        CONSTRAINT pk_story_cursor PRIMARY KEY (name)
    )""",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS story_cursor",
    "ALTER TABLE alert DROP COLUMN IF EXISTS stories",
    "DROP INDEX IF EXISTS ix_scored_event_story",
    "ALTER TABLE scored_event DROP COLUMN IF EXISTS copies",
    "ALTER TABLE scored_event DROP COLUMN IF EXISTS novel",
    "ALTER TABLE scored_event DROP COLUMN IF EXISTS story_id",
    "DROP TABLE IF EXISTS story",
    "DROP TABLE IF EXISTS story_band",
]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DOWNGRADE:
        op.execute(stmt)
