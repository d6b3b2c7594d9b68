"""History lifecycle (core/history.py): `history_day` records each raw day's state (archived,
dropped, restored and pinned until), and the coarse rollups get a time index for their bounded
retention deletes.

Frozen: explicit DDL.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = [
    """CREATE TABLE history_day (
        day DATE NOT NULL,
        state VARCHAR(16) NOT NULL,
        archive_dir TEXT,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        pinned_until TIMESTAMP WITH TIME ZONE,
        CONSTRAINT pk_history_day PRIMARY KEY (day)
    )""",
    "CREATE INDEX ix_event_rollup_5m_bucket ON event_rollup_5m (bucket)",
    "CREATE INDEX ix_event_rollup_hour_bucket ON event_rollup_hour (bucket)",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS ix_event_rollup_hour_bucket",
    "DROP INDEX IF EXISTS ix_event_rollup_5m_bucket",
    "DROP TABLE IF EXISTS history_day",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
