"""Database tables (SQLAlchemy 2) shared by the worker, the API and the dashboards' tests.
The schema itself is made by the frozen Alembic revisions in core/migrations/versions; these
classes describe it for queries (a test checks that the two agree).

`scored_event` is range-partitioned by `published_at` (daily UTC partitions created ahead by
`core.pg.ensure_partitions`, plus a default partition so an out-of-range timestamp is never lost).
A partitioned table's primary key must contain the partition key, so the key is
(source, id, published_at): a replayed message carries the same three values and is absorbed
by ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (ARRAY, LargeBinary, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, MetaData, String,
                        Text, UniqueConstraint, func)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
                                           "ix": "ix_%(table_name)s_%(column_0_name)s",
                                           "fk": "fk_%(table_name)s_%(column_0_name)s"})


TS = DateTime(timezone=True)


class ScoredEvent(Base):
    __tablename__ = "scored_event"
    __table_args__ = (
        Index("ix_scored_event_topic_time", "topic", "published_at"),
        Index("ix_scored_event_tickers", "tickers", postgresql_using="gin"),
        Index("ix_scored_event_time", "published_at"),
        {"postgresql_partition_by": "RANGE (published_at)"},
    )
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    published_at: Mapped[datetime] = mapped_column(TS, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    lang: Mapped[str | None] = mapped_column(String(16))
    tickers: Mapped[list[str]] = mapped_column(ARRAY(String(16)), server_default="{}")
    ingested_at: Mapped[datetime] = mapped_column(TS)
    scored_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    stored_at: Mapped[datetime] = mapped_column(TS, server_default=func.clock_timestamp())  # end-to-end lag
    topic: Mapped[str] = mapped_column(String(64))
    topic_confidence: Mapped[float] = mapped_column(Float)
    sentiment: Mapped[str] = mapped_column(String(16))
    p_negative: Mapped[float] = mapped_column(Float)
    p_neutral: Mapped[float] = mapped_column(Float)
    p_positive: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    truncated: Mapped[bool] = mapped_column(Boolean, server_default=sql("false"))


class EventEntity(Base):
    """Who an event is about (revision 0005): one row per (event, ticker) from the entity linker,
    with the entity's own sentiment. `counted`: the entity counted for its ticker (relevance at or
    above the worker's cut, or a cashtag / feed tag); the event's `tickers` are the counted ones.
    Written with its event (core.events.store_scored), partitioned by day like scored_event."""

    __tablename__ = "event_entity"
    __table_args__ = (
        Index("ix_event_entity_ticker_time", "ticker", "published_at",
              postgresql_include=["relevance", "sentiment", "score"]),
        Index("ix_event_entity_time", "published_at"),
        {"postgresql_partition_by": "RANGE (published_at)"},
    )
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    published_at: Mapped[datetime] = mapped_column(TS, primary_key=True)
    ticker: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)  # None: a cashtag or tag not in the directory
    relevance: Mapped[float] = mapped_column(Float)
    sentiment: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    sentiment_from: Mapped[str] = mapped_column(String(16))  # item | item_shared | entity_head
    spans: Mapped[list] = mapped_column(JSONB, server_default=sql("'[]'"))  # [[start, end], ...] in `text`
    sources: Mapped[list[str]] = mapped_column(ARRAY(String(8)), server_default="{}")  # cashtag|tag|ticker|name
    counted: Mapped[bool] = mapped_column(Boolean)
    directory_version: Mapped[str] = mapped_column(String(80))


class Alert(Base):
    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("key_type", "key", "window_start", name="uq_alert_key_window"),
                      Index("ix_alert_opened", "opened_at"))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    key_type: Mapped[str] = mapped_column(String(8))  # topic | ticker
    key: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(TS)
    window_end: Mapped[datetime] = mapped_column(TS)
    n: Mapped[int] = mapped_column(Integer)
    negatives: Mapped[int] = mapped_column(Integer)
    baseline_rate: Mapped[float] = mapped_column(Float)  # expected negative share
    baseline_n: Mapped[float] = mapped_column(Float)  # expected items per window
    z: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(8))  # low | medium | high
    sample_event_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    state: Mapped[str] = mapped_column(String(8), server_default="open")  # open | resolved
    opened_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(TS)
    revision: Mapped[int] = mapped_column(Integer, server_default=sql("0"))  # bumped by every escalation
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class AlertEvent(Base):
    """Every change of an alert (opened, escalated, resolved), in the order the worker wrote
    them: the id is the SSE event id, an insert NOTIFYs channel `finsent_alert_event` with it.
    Unique per (alert, event, revision): a replayed decision writes nothing new."""

    __tablename__ = "alert_event"
    __table_args__ = (UniqueConstraint("alert_id", "event", "revision", name="uq_alert_event_alert_event_revision"),
                      Index("ix_alert_event_at", "at"))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))  # opened | escalated | resolved
    revision: Mapped[int] = mapped_column(Integer)
    key_type: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    payload: Mapped[dict] = mapped_column(JSONB)  # the finsent.alerts record, as published


class EventRollup(Base):
    """Per-minute counts per aggregation key (topic, ticker, source), maintained by the worker in
    the same transaction as the rows it really inserted, so a replayed batch counts once."""

    __tablename__ = "event_rollup_minute"
    __table_args__ = (Index("ix_event_rollup_minute_type_minute", "key_type", "minute"),
                      Index("ix_event_rollup_minute_cover", "key_type", "key", "minute",  # made by 0003
                            postgresql_include=["n", "negatives", "neutrals", "positives", "score_sum"]))
    key_type: Mapped[str] = mapped_column(String(8), primary_key=True)  # topic | ticker | source
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(TS, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    negatives: Mapped[int] = mapped_column(Integer)
    neutrals: Mapped[int] = mapped_column(Integer)
    positives: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float] = mapped_column(Float)


class DetectorOutbox(Base):
    """Count records for the detector, written with the rows they count and deleted once
    published to finsent.scored; rows left behind by a crash are published again (the id is
    the batch id the detector deduplicates on)."""

    __tablename__ = "detector_outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class ApiKey(Base):
    """Only the sha256 of a key is stored; `prefix` (its first characters) lets a person tell keys apart."""

    __tablename__ = "api_key"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=sql("false"))
    prefix: Mapped[str] = mapped_column(String(16), server_default="")
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)), server_default="{read}")  # read|subscribe|feedback|admin
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class Subscription(Base):
    __tablename__ = "subscription"
    __table_args__ = (Index("ix_subscription_api_key_id", "api_key_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # webhook | stream
    target_url: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(String(128))
    topics: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    tickers: Mapped[list[str]] = mapped_column(ARRAY(String(16)), server_default="{}")
    min_severity: Mapped[str] = mapped_column(String(8), server_default="low")
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    name: Mapped[str] = mapped_column(String(128), server_default="")
    key_types: Mapped[list[str]] = mapped_column(ARRAY(String(8)), server_default="{topic,ticker}")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=sql("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    start_event_id: Mapped[int] = mapped_column(BigInteger, server_default=sql("0"))  # older alert events are not delivered
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    min_relevance: Mapped[float | None] = mapped_column(Float)  # ticker alerts: evidence about the company this much


class Delivery(Base):
    """One webhook delivery of an alert event to a subscription. The unique pair is the claim:
    whichever API process inserts it first owns the fan-out; sending is leased by `locked_until`."""

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("alert_event_id", "subscription_id"),
                      Index("ix_delivery_due", "next_attempt_at", postgresql_where=sql("state = 'pending'")),
                      Index("ix_delivery_subscription_id", "subscription_id", "id"))
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alert_event_id: Mapped[int] = mapped_column(ForeignKey("alert_event.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    locked_until: Mapped[datetime | None] = mapped_column(TS)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(TS)


class DeliveryAttempt(Base):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (Index("ix_delivery_attempt_subscription_id", "subscription_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | failed | disabled
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class Feedback(Base):
    """An analyst's correction of one scored event (no foreign key: scored_event is partitioned)."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_event", "source", "event_id"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(256))
    published_at: Mapped[datetime] = mapped_column(TS)
    topic: Mapped[str | None] = mapped_column(String(64))
    sentiment: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class HistoryDay(Base):
    """The lifecycle state of one UTC day of raw history (core/history.py): archived, dropped or
    restored, and how long a restored day stays before upkeep drops it again."""

    __tablename__ = "history_day"
    day: Mapped[date] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    archive_dir: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    pinned_until: Mapped[datetime | None] = mapped_column(TS)
