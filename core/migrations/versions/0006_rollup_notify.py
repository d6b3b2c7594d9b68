"""Series answers can be cached by the API: every statement that changes a rollup table (the
worker's write path, core/events.py, adds to the minute, 5-minute and hourly rows in one
statement; retention deletes old rows; a TRUNCATE) NOTIFYs `finsent_rollup` with the oldest
bucket it changed (epoch seconds; 0 for a TRUNCATE). A notification is delivered at commit and
only then, so an API process that drops its cached series reaching past that time never keeps an
answer older than the data it can read. A statement that changed no row (a replayed batch)
notifies nothing; Postgres folds equal payloads of one transaction into one. Frozen: explicit DDL.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = {"event_rollup_minute": "minute", "event_rollup_5m": "bucket", "event_rollup_hour": "bucket"}
FUNCTION = """CREATE OR REPLACE FUNCTION finsent_rollup_notify_{col}() RETURNS trigger AS $$
    DECLARE oldest double precision;
    BEGIN
        SELECT extract(epoch FROM min({col})) INTO oldest FROM changed;
        IF oldest IS NOT NULL THEN
            PERFORM pg_notify('finsent_rollup', floor(oldest)::bigint::text);
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql"""
# a TRUNCATE has no rows to name: everything may have changed (payload 0, the epoch)
EVERYTHING = """CREATE OR REPLACE FUNCTION finsent_rollup_notify_all() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('finsent_rollup', '0');
        RETURN NULL;
    END $$ LANGUAGE plpgsql"""
# INSERT ... ON CONFLICT DO UPDATE fires both the insert and the update trigger; a delete
# (retention, core/history.py, per table) the delete trigger
EVENTS = {"insert": "NEW", "update": "NEW", "delete": "OLD"}


def upgrade() -> None:
    for col in sorted(set(TABLES.values())):
        op.execute(FUNCTION.format(col=col))
    op.execute(EVERYTHING)
    for table, col in TABLES.items():
        for event, side in EVENTS.items():
            op.execute(f"""CREATE TRIGGER {table}_notify_{event} AFTER {event.upper()} ON {table}
                REFERENCING {side} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION finsent_rollup_notify_{col}()""")
        op.execute(f"""CREATE TRIGGER {table}_notify_truncate AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION finsent_rollup_notify_all()""")


def downgrade() -> None:
    for table in TABLES:
        for event in (*EVENTS, "truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_{event} ON {table}")
    for col in sorted(set(TABLES.values())):
        op.execute(f"DROP FUNCTION IF EXISTS finsent_rollup_notify_{col}()")
    op.execute("DROP FUNCTION IF EXISTS finsent_rollup_notify_all()")
