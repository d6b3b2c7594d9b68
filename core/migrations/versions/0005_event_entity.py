"""Who each item is about: `event_entity`, one row per (event, ticker) with the linker's name,
relevance and spans, the entity's own sentiment and score, how it was found, whether it counted
for its ticker (at or above the relevance cut, or a cashtag / feed tag) and the version of the
symbol directory that linked it. Range-partitioned by published_at like scored_event (daily UTC
partitions plus a default one); `finsent_ensure_day_partition` now creates the day of both
tables. Subscriptions gain `min_relevance`.

Existing rows get entity rows from their `tickers` (cashtags and feed tags, the only keys they
had): relevance 1, the item's sentiment, sources {backfill}, directory version 'backfill-0005',
so `ticker=` filters keep finding history. Frozen: explicit DDL.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FUNCTION_0005 = """CREATE OR REPLACE FUNCTION finsent_ensure_day_partition(day date) RETURNS boolean AS $$
    DECLARE
        lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
        hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
        made boolean := false;
        tbl text;
        name text;
    BEGIN
        IF to_regclass('scored_event_' || to_char(day, 'YYYYMMDD')) IS NOT NULL
           AND to_regclass('event_entity_' || to_char(day, 'YYYYMMDD')) IS NOT NULL THEN
            RETURN false;
        END IF;
        LOCK TABLE scored_event_default, event_entity_default IN ACCESS EXCLUSIVE MODE;
        FOREACH tbl IN ARRAY ARRAY['scored_event', 'event_entity'] LOOP
            name := tbl || '_' || to_char(day, 'YYYYMMDD');
            CONTINUE WHEN to_regclass(name) IS NOT NULL;
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', name, tbl);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE published_at >= %L '
                           'AND published_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                           tbl || '_default', lo, hi, name);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', tbl, name, lo, hi);
            made := true;
        END LOOP;
        RETURN made;
    END $$ LANGUAGE plpgsql"""

# as revision 0002 made it
FUNCTION_0002 = """CREATE OR REPLACE FUNCTION finsent_ensure_day_partition(day date) RETURNS boolean AS $$
    DECLARE
        name text := 'scored_event_' || to_char(day, 'YYYYMMDD');
        lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
        hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    BEGIN
        IF to_regclass(name) IS NOT NULL THEN
            RETURN false;
        END IF;
        LOCK TABLE scored_event_default IN ACCESS EXCLUSIVE MODE;
        IF to_regclass(name) IS NOT NULL THEN
            RETURN false;
        END IF;
        EXECUTE format('CREATE TABLE %I (LIKE scored_event INCLUDING DEFAULTS)', name);
        EXECUTE format('WITH moved AS (DELETE FROM scored_event_default WHERE published_at >= %L '
                       'AND published_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved', lo, hi, name);
        EXECUTE format('ALTER TABLE scored_event ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        RETURN true;
    END $$ LANGUAGE plpgsql"""

UPGRADE = [
    """CREATE TABLE event_entity (
        source VARCHAR(64) NOT NULL,
        event_id VARCHAR(256) NOT NULL,
        published_at TIMESTAMP WITH TIME ZONE NOT NULL,
        ticker VARCHAR(16) NOT NULL,
        name TEXT,
        relevance FLOAT NOT NULL,
        sentiment VARCHAR(16) NOT NULL,
        score FLOAT NOT NULL,
        sentiment_from VARCHAR(16) NOT NULL,
        spans JSONB DEFAULT '[]' NOT NULL,
        sources VARCHAR(8)[] DEFAULT '{}' NOT NULL,
        counted BOOLEAN NOT NULL,
        directory_version VARCHAR(80) NOT NULL,
        CONSTRAINT pk_event_entity PRIMARY KEY (source, event_id, published_at, ticker)
    ) PARTITION BY RANGE (published_at)""",
    "CREATE TABLE event_entity_default PARTITION OF event_entity DEFAULT",
    # by ticker and time, with what the API's filters and summaries read (index-only scans)
    """CREATE INDEX ix_event_entity_ticker_time ON event_entity (ticker, published_at)
        INCLUDE (relevance, sentiment, score)""",
    "CREATE INDEX ix_event_entity_time ON event_entity (published_at)",
    FUNCTION_0005,
    # a day partition for every day scored_event already has one for (the default takes the rest)
    """DO $$
    DECLARE part record;
    BEGIN
        FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = 'scored_event'::regclass AND c.relname ~ '^scored_event_[0-9]{8}$' LOOP
            PERFORM finsent_ensure_day_partition(to_date(substr(part.relname, 14), 'YYYYMMDD'));
        END LOOP;
    END $$""",
    """INSERT INTO event_entity (source, event_id, published_at, ticker, name, relevance, sentiment, score,
        sentiment_from, spans, sources, counted, directory_version)
    SELECT source, id, published_at, t, NULL, 1.0, sentiment, score, 'item', '[]', '{backfill}', true, 'backfill-0005'
    FROM scored_event, unnest(tickers) AS t ON CONFLICT DO NOTHING""",
    "ALTER TABLE subscription ADD COLUMN min_relevance FLOAT",
]

DOWNGRADE = [
    "ALTER TABLE subscription DROP COLUMN IF EXISTS min_relevance",
    FUNCTION_0002,
    "DROP TABLE IF EXISTS event_entity",
]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DOWNGRADE:
        op.execute(stmt)
