"""scored_event (range-partitioned by published_at), alert, api_key, subscription

Revision ID: 0001
Revises:
"""
from datetime import date, timedelta

from alembic import op

from finsent.db import DEFAULT_PARTITION_DDL, Base, partition_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("scored_event", "alert", "api_key", "subscription")


def upgrade() -> None:
    bind = op.get_bind()
    Base.metadata.create_all(bind, tables=[Base.metadata.tables[t] for t in TABLES])
    op.execute(DEFAULT_PARTITION_DDL)
    today = date.today()
    for d in range(-1, 8):
        op.execute(partition_ddl(today + timedelta(days=d)))


def downgrade() -> None:
    bind = op.get_bind()
    Base.metadata.drop_all(bind, tables=[Base.metadata.tables[t] for t in reversed(TABLES)])
