"""Coarser rollups for fast series: 5-minute and hourly counts per aggregation key, the same
columns as event_rollup_minute, filled from it here and kept by the worker's write path
(core/events.py) in the same statement as the minute rows, from the rows really inserted, so a
replayed batch counts once in every table. Buckets are epoch-aligned in UTC, like the API's.
Stop the worker while this runs: rows it stored between this backfill and its restart on the
new code would be missing from the new tables. Frozen: explicit DDL.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = {"event_rollup_5m": "date_bin('5 minutes', minute, TIMESTAMPTZ '1970-01-01 00:00:00+00')",
          "event_rollup_hour": "date_trunc('hour', minute, 'UTC')"}


def upgrade() -> None:
    for table, bucket in TABLES.items():
        op.execute(f"""CREATE TABLE {table} (
            key_type VARCHAR(8) NOT NULL,
            key VARCHAR(64) NOT NULL,
            bucket TIMESTAMP WITH TIME ZONE NOT NULL,
            n INTEGER NOT NULL,
            negatives INTEGER NOT NULL,
            neutrals INTEGER NOT NULL,
            positives INTEGER NOT NULL,
            score_sum FLOAT NOT NULL,
            -- the counts ride in the key's index: series reads are index-only scans
            CONSTRAINT pk_{table} PRIMARY KEY (key_type, key, bucket) INCLUDE (n, negatives, neutrals, positives,
                                                                             score_sum)
        )""")
        op.execute(f"""INSERT INTO {table} (key_type, key, bucket, n, negatives, neutrals, positives, score_sum)
            SELECT key_type, key, {bucket}, sum(n), sum(negatives), sum(neutrals), sum(positives), sum(score_sum)
            FROM event_rollup_minute GROUP BY 1, 2, 3""")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
