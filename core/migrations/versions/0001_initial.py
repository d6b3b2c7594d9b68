"""scored_event (range-partitioned by published_at, with a default partition), alert, api_key,
subscription. Frozen: explicit DDL, never derived from the live models.

Revision ID: 0001
Revises:
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = [
    """CREATE TABLE scored_event (
        source VARCHAR(64) NOT NULL,
        id VARCHAR(256) NOT NULL,
        published_at TIMESTAMP WITH TIME ZONE NOT NULL,
        text TEXT NOT NULL,
        title TEXT,
        url TEXT,
        lang VARCHAR(16),
        tickers VARCHAR(16)[] DEFAULT '{}' NOT NULL,
        ingested_at TIMESTAMP WITH TIME ZONE NOT NULL,
        scored_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        stored_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
        topic VARCHAR(64) NOT NULL,
        topic_confidence FLOAT NOT NULL,
        sentiment VARCHAR(16) NOT NULL,
        p_negative FLOAT NOT NULL,
        p_neutral FLOAT NOT NULL,
        p_positive FLOAT NOT NULL,
        score FLOAT NOT NULL,
        model_version VARCHAR(64) NOT NULL,
        truncated BOOLEAN DEFAULT false NOT NULL,
        CONSTRAINT pk_scored_event PRIMARY KEY (source, id, published_at)
    ) PARTITION BY RANGE (published_at)""",
    "CREATE INDEX ix_scored_event_topic_time ON scored_event (topic, published_at)",
    "CREATE INDEX ix_scored_event_tickers ON scored_event USING gin (tickers)",
    "CREATE INDEX ix_scored_event_time ON scored_event (published_at)",
    "CREATE TABLE IF NOT EXISTS scored_event_default PARTITION OF scored_event DEFAULT",
    """CREATE TABLE alert (
        id BIGSERIAL NOT NULL,
        key_type VARCHAR(8) NOT NULL,
        key VARCHAR(64) NOT NULL,
        window_start TIMESTAMP WITH TIME ZONE NOT NULL,
        window_end TIMESTAMP WITH TIME ZONE NOT NULL,
        n INTEGER NOT NULL,
        negatives INTEGER NOT NULL,
        baseline_rate FLOAT NOT NULL,
        baseline_n FLOAT NOT NULL,
        z FLOAT NOT NULL,
        p_value FLOAT NOT NULL,
        severity VARCHAR(8) NOT NULL,
        sample_event_ids TEXT[] NOT NULL,
        state VARCHAR(8) DEFAULT 'open' NOT NULL,
        opened_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        resolved_at TIMESTAMP WITH TIME ZONE,
        CONSTRAINT pk_alert PRIMARY KEY (id),
        CONSTRAINT uq_alert_key_window UNIQUE (key_type, key, window_start)
    )""",
    "CREATE INDEX ix_alert_opened ON alert (opened_at)",
    """CREATE TABLE api_key (
        id SERIAL NOT NULL,
        name VARCHAR(128) NOT NULL,
        key_hash VARCHAR(128) NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        revoked BOOLEAN DEFAULT false NOT NULL,
        CONSTRAINT pk_api_key PRIMARY KEY (id),
        CONSTRAINT uq_api_key_key_hash UNIQUE (key_hash)
    )""",
    """CREATE TABLE subscription (
        id SERIAL NOT NULL,
        api_key_id INTEGER NOT NULL,
        kind VARCHAR(16) NOT NULL,
        target_url TEXT,
        secret VARCHAR(128),
        topics VARCHAR(64)[] DEFAULT '{}' NOT NULL,
        tickers VARCHAR(16)[] DEFAULT '{}' NOT NULL,
        min_severity VARCHAR(8) DEFAULT 'low' NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        CONSTRAINT pk_subscription PRIMARY KEY (id),
        CONSTRAINT fk_subscription_api_key_id FOREIGN KEY(api_key_id) REFERENCES api_key (id) ON DELETE CASCADE
    )""",
]


def upgrade() -> None:
    for stmt in UPGRADE:
        op.execute(stmt)


def downgrade() -> None:
    for table in ("subscription", "api_key", "alert", "scored_event"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
