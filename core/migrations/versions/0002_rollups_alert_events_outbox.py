"""Per-minute rollups, alert revisions and the alert event log (with NOTIFY), the detector
outbox, and the UTC daily-partition function used by upkeep.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = [
    """CREATE TABLE event_rollup_minute (
        key_type VARCHAR(8) NOT NULL,
        key VARCHAR(64) NOT NULL,
        minute TIMESTAMP WITH TIME ZONE NOT NULL,
        n INTEGER NOT NULL,
        negatives INTEGER NOT NULL,
        neutrals INTEGER NOT NULL,
        positives INTEGER NOT NULL,
        score_sum FLOAT NOT NULL,
        CONSTRAINT pk_event_rollup_minute PRIMARY KEY (key_type, key, minute)
    )""",
    "CREATE INDEX ix_event_rollup_minute_type_minute ON event_rollup_minute (key_type, minute)",
    "ALTER TABLE alert ADD COLUMN revision INTEGER DEFAULT 0 NOT NULL",
    "ALTER TABLE alert ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL",
    """CREATE TABLE alert_event (
        id BIGSERIAL NOT NULL,
        alert_id BIGINT NOT NULL,
        event VARCHAR(16) NOT NULL,
        revision INTEGER NOT NULL,
        key_type VARCHAR(8) NOT NULL,
        key VARCHAR(64) NOT NULL,
        severity VARCHAR(8) NOT NULL,
        at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        payload JSONB NOT NULL,
        CONSTRAINT pk_alert_event PRIMARY KEY (id),
        CONSTRAINT fk_alert_event_alert_id FOREIGN KEY(alert_id) REFERENCES alert (id) ON DELETE CASCADE,
        CONSTRAINT uq_alert_event_alert_event_revision UNIQUE (alert_id, event, revision)
    )""",
    "CREATE INDEX ix_alert_event_at ON alert_event (at)",
    """CREATE FUNCTION finsent_notify_alert_event() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('finsent_alert_event', NEW.id::text);
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER alert_event_notify AFTER INSERT ON alert_event
        FOR EACH ROW EXECUTE FUNCTION finsent_notify_alert_event()""",
    """CREATE TABLE detector_outbox (
        id BIGSERIAL NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        payload BYTEA NOT NULL,
        CONSTRAINT pk_detector_outbox PRIMARY KEY (id)
    )""",
    # One UTC day of scored_event: created beside the table, filled with that day's rows from
    # the default partition, then attached (attaching a day whose rows sit in the default
    # partition would fail). Idempotent; one call = one transaction = one day.
    """CREATE FUNCTION finsent_ensure_day_partition(day date) RETURNS boolean AS $$
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
    END $$ LANGUAGE plpgsql""",
]

DOWNGRADE = [
    "DROP FUNCTION IF EXISTS finsent_ensure_day_partition(date)",
    "DROP TABLE IF EXISTS detector_outbox",
    "DROP TABLE IF EXISTS alert_event",
    "DROP FUNCTION IF EXISTS finsent_notify_alert_event()",
    "ALTER TABLE alert DROP COLUMN IF EXISTS updated_at",
    "ALTER TABLE alert DROP COLUMN IF EXISTS revision",
    "DROP TABLE IF EXISTS event_rollup_minute",
]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DOWNGRADE:
        op.execute(stmt)
