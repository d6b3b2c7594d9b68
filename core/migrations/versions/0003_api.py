"""The API's tables: scoped API keys, subscription filters and delivery state, webhook
deliveries (one row per alert event × subscription, the claim that makes two API processes
send once), the delivery log, analysts' feedback, and a covering index for series reads. Frozen: explicit DDL.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE api_key ADD COLUMN prefix VARCHAR(16) DEFAULT '' NOT NULL",
    "ALTER TABLE api_key ADD COLUMN scopes VARCHAR(16)[] DEFAULT '{read}' NOT NULL",
    "ALTER TABLE api_key ADD COLUMN revoked_at TIMESTAMP WITH TIME ZONE",
    "ALTER TABLE subscription ADD COLUMN name VARCHAR(128) DEFAULT '' NOT NULL",
    "ALTER TABLE subscription ADD COLUMN key_types VARCHAR(8)[] DEFAULT '{topic,ticker}' NOT NULL",
    "ALTER TABLE subscription ADD COLUMN enabled BOOLEAN DEFAULT true NOT NULL",
    "ALTER TABLE subscription ADD COLUMN disabled_reason TEXT",
    "ALTER TABLE subscription ADD COLUMN consecutive_failures INTEGER DEFAULT 0 NOT NULL",
    # alert events up to this id existed before the subscription: they are not delivered to it
    "ALTER TABLE subscription ADD COLUMN start_event_id BIGINT DEFAULT 0 NOT NULL",
    "ALTER TABLE subscription ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL",
    "CREATE INDEX ix_subscription_api_key_id ON subscription (api_key_id)",
    """CREATE TABLE delivery (
        id BIGSERIAL NOT NULL,
        alert_event_id BIGINT NOT NULL,
        subscription_id INTEGER NOT NULL,
        state VARCHAR(16) DEFAULT 'pending' NOT NULL,
        attempts INTEGER DEFAULT 0 NOT NULL,
        next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        locked_until TIMESTAMP WITH TIME ZONE,
        last_status INTEGER,
        last_error TEXT,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        delivered_at TIMESTAMP WITH TIME ZONE,
        CONSTRAINT pk_delivery PRIMARY KEY (id),
        CONSTRAINT fk_delivery_alert_event_id FOREIGN KEY(alert_event_id) REFERENCES alert_event (id) ON DELETE CASCADE,
        CONSTRAINT fk_delivery_subscription_id FOREIGN KEY(subscription_id) REFERENCES subscription (id) ON DELETE CASCADE,
        CONSTRAINT uq_delivery_alert_event_id UNIQUE (alert_event_id, subscription_id)
    )""",
    "CREATE INDEX ix_delivery_due ON delivery (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX ix_delivery_subscription_id ON delivery (subscription_id, id)",
    """CREATE TABLE delivery_attempt (
        id BIGSERIAL NOT NULL,
        delivery_id BIGINT NOT NULL,
        subscription_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        outcome VARCHAR(16) NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms FLOAT NOT NULL,
        CONSTRAINT pk_delivery_attempt PRIMARY KEY (id),
        CONSTRAINT fk_delivery_attempt_delivery_id FOREIGN KEY(delivery_id) REFERENCES delivery (id) ON DELETE CASCADE
    )""",
    "CREATE INDEX ix_delivery_attempt_subscription_id ON delivery_attempt (subscription_id, id)",
    """CREATE TABLE feedback (
        id BIGSERIAL NOT NULL,
        source VARCHAR(64) NOT NULL,
        event_id VARCHAR(256) NOT NULL,
        published_at TIMESTAMP WITH TIME ZONE NOT NULL,
        topic VARCHAR(64),
        sentiment VARCHAR(16),
        note TEXT,
        api_key_id INTEGER,
        created_by VARCHAR(128) NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        CONSTRAINT pk_feedback PRIMARY KEY (id),
        CONSTRAINT fk_feedback_api_key_id FOREIGN KEY(api_key_id) REFERENCES api_key (id) ON DELETE SET NULL
    )""",
    "CREATE INDEX ix_feedback_event ON feedback (source, event_id)",
    # /v1/series reads one key's minutes in order: a covering index makes that an index-only
    # scan of adjacent leaf pages instead of one heap page per minute row
    """CREATE INDEX ix_event_rollup_minute_cover ON event_rollup_minute (key_type, key, minute)
        INCLUDE (n, negatives, neutrals, positives, score_sum)""",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS ix_event_rollup_minute_cover",
    "DROP TABLE IF EXISTS feedback",
    "DROP TABLE IF EXISTS delivery_attempt",
    "DROP TABLE IF EXISTS delivery",
    "DROP INDEX IF EXISTS ix_subscription_api_key_id",
    *(f"ALTER TABLE subscription DROP COLUMN IF EXISTS {c}" for c in (
        "updated_at", "start_event_id", "consecutive_failures", "disabled_reason", "enabled", "key_types", "name")),
    *(f"ALTER TABLE api_key DROP COLUMN IF EXISTS {c}" for c in ("revoked_at", "scopes", "prefix")),
]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DOWNGRADE:
        op.execute(stmt)
