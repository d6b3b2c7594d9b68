"""Request and response models, split by direction (XCreate / XUpdate / XPublic). Every input
is bounded here: list lengths, string lengths and patterns, page sizes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.labels import SENTIMENTS, TOPICS

KeyType = Literal["topic", "ticker"]
Severity = Literal["low", "medium", "high"]
Sentiment = Literal[SENTIMENTS]  # type: ignore[valid-type]
Topic = Literal[TOPICS]  # type: ignore[valid-type]
Ticker = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9.\-]{0,15}$", description="upper-case symbol, e.g. ACME")]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class Message(BaseModel):
    detail: str


class ModelState(BaseModel):
    version: str
    dir: str
    swap_error: str | None = Field(None, description="why the model `current` names now was refused, if it was")


class Health(BaseModel):
    status: Literal["ok"]
    model: ModelState | None = Field(None, description="the scoring model in use; null until the first scoring request")


class Ready(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
    revision: str
    replica: Literal["ok", "none"] = Field("none", description="the read replica (FINSENT_API_READ_URL): ok, or "
                                           "none when reads go to the primary")
    replica_lag_s: float | None = Field(None, description="its last sampled lag in seconds (null: not sampled yet)")


# --- entities ----------------------------------------------------------------------------
Relevance = Annotated[float, Field(ge=0, le=1)]


class EntityPublic(BaseModel):
    """Who an item is about (the entity linker), with that entity's own sentiment."""

    ticker: str
    name: str | None = Field(description="the directory's company name; null for a cashtag or tag it does not list")
    relevance: float = Field(description="0..1: how much the item is about it (see models/entities/README.md)")
    sentiment: str
    score: float = Field(description="p(positive) - p(negative) for this entity")
    sentiment_from: str = Field(description="item: the item's own (it names one entity); item_shared: the item's, "
                                            "shared by the entities it names; entity_head: the per-entity model")
    spans: list[list[int]] = Field(description="[start, end) character offsets of its mentions in `text`")
    sources: list[str] = Field(description="how it was found: cashtag, tag (the feed's tickers), ticker, name")


class SymbolPublic(BaseModel):
    ticker: str
    name: str
    exchange: str
    aliases: list[str]
    share_classes: list[str] = Field(description="every listed class of the same company, primary first")
    primary: bool


class EntitySearch(BaseModel):
    directory_version: str
    items: list[SymbolPublic]


class EntityRecent(BaseModel):
    window_start: datetime
    window_end: datetime
    min_relevance: float
    n: int = Field(description="items about it (relevance at or above min_relevance, or a cashtag/feed tag)")
    negatives: int
    neutrals: int
    positives: int
    negative_share: float | None
    mean_score: float | None
    mean_relevance: float | None
    last_seen: datetime | None
    passing_mentions: int = Field(description="items that named it below min_relevance (not counted above)")


class EntityDetail(BaseModel):
    ticker: str
    directory_version: str
    symbol: SymbolPublic | None = Field(description="null: a cashtag or tag seen in items, not in the directory")
    recent: EntityRecent


# --- events ------------------------------------------------------------------------------
class EventPublic(BaseModel):
    source: str
    id: str
    published_at: datetime
    title: str | None
    text: str
    url: str | None
    lang: str | None
    tickers: list[str]
    topic: str
    topic_confidence: float
    sentiment: str
    p_negative: float
    p_neutral: float
    p_positive: float
    score: float
    model_version: str
    truncated: bool
    ingested_at: datetime
    scored_at: datetime
    story_id: str | None = Field(None, description="its story: `source/id` of the story's first event (same "
                                 "source or not); null until a story was assigned (`finsent stories backfill`)")
    novel: bool | None = Field(None, description="true for the first item of its story, false for a copy")
    copies: int | None = Field(None, description="the story's copies when this item was stored, itself included")
    entities: list[EntityPublic] = Field([], description="who the item is about, most relevant first")


class EventPage(BaseModel):
    items: list[EventPublic]
    next_cursor: str | None = Field(description="pass as `cursor` (with the same filters) for the next page")


# --- series ------------------------------------------------------------------------------
class SeriesPublic(BaseModel):
    """One key's buckets as parallel arrays (compact for charts); share and mean are null for empty buckets."""

    key: str
    t: list[datetime]
    n: list[int]
    negatives: list[int]
    neutrals: list[int]
    positives: list[int]
    negative_share: list[float | None]
    mean_score: list[float | None]


class SeriesResponse(BaseModel):
    key_type: Literal["topic", "ticker", "source"]
    bucket: str
    resolution: Literal["1m", "5m", "1h", "raw"] = Field(
        description="what the buckets were summed from: the per-minute, 5-minute or hourly rollup (the coarsest "
                    "that tiles the bucket and is still kept for the whole span), or `raw` scored events "
                    "(novel_only). A bucket finer than what is kept at `start` is a 400 that names the finest "
                    "bucket available there")
    novel_only: bool = Field(False, description="only the first item of each story was counted")
    start: datetime = Field(description="the requested start rounded down to a bucket boundary (epoch-aligned)")
    end: datetime = Field(description="the requested end rounded UP to a bucket boundary: the buckets count "
                                      "exactly [start, end), the last one whole (it may reach past now)")
    series: list[SeriesPublic]


class MoverPublic(BaseModel):
    key: str
    n: int
    negatives: int
    negative_share: float
    baseline_n: int
    baseline_negatives: int
    baseline_share: float | None = Field(description="null when the key has no history in the baseline span")
    delta: float = Field(description="negative_share - baseline_share (smoothed baseline when it is thin)")
    z: float = Field(description="binomial z-score of the window's negatives against the baseline share")


class MoversResponse(BaseModel):
    key_type: KeyType
    window_start: datetime
    window_end: datetime = Field(description="the requested end rounded up to a whole minute (the rollups' "
                                             "resolution): the counts cover exactly [window_start, window_end)")
    baseline_start: datetime
    items: list[MoverPublic]


# --- alerts ------------------------------------------------------------------------------
class AlertStory(BaseModel):
    model_config = ConfigDict(extra="allow")  # whatever else the worker records about a story is passed on

    story_id: str
    copies: int
    sources: list[str] = []


class AlertPublic(BaseModel):
    id: int
    key_type: str
    key: str
    window_start: datetime
    window_end: datetime
    n: int
    negatives: int
    baseline_rate: float
    baseline_n: float
    z: float
    p_value: float
    severity: str
    sample_event_ids: list[str]
    state: str
    opened_at: datetime
    resolved_at: datetime | None
    revision: int
    updated_at: datetime
    stories: list[AlertStory] = Field([], description="the stories of the alert's window, most copies first: "
                                      "its evidence counts stories, not copies")


class AlertPage(BaseModel):
    items: list[AlertPublic]
    next_cursor: str | None


class AlertChange(BaseModel):
    id: int = Field(description="the alert event id (also the live stream's event id)")
    event: str
    revision: int
    severity: str
    at: datetime


class AlertDetail(AlertPublic):
    samples: list[EventPublic]
    series: SeriesPublic = Field(description="the key's series around the alert window: per minute, or coarser "
                                 "once the minute rollups of that time are past retention (`series_bucket`)")
    series_bucket: Literal["1m", "5m", "1h"] = "1m"
    history: list[AlertChange]


class AlertEventPublic(BaseModel):
    """One message of the live stream and the body of a webhook: an alert change."""

    id: int
    event: str
    alert: dict = Field(description="the alert as published on finsent.alerts")


# --- subscriptions -------------------------------------------------------------------------
class SubscriptionFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_types: list[KeyType] = Field(["topic", "ticker"], min_length=1, max_length=2)
    topics: list[Topic] = Field([], max_length=20, description="empty: every topic")
    tickers: list[Ticker] = Field([], max_length=200, description="empty: every ticker")
    min_severity: Severity = "low"
    min_relevance: Relevance | None = Field(None, description="ticker alerts only when their evidence has an item "
                                                              "about the company at least this relevant; null: any")


class SubscriptionCreate(SubscriptionFilters):
    name: Name
    delivery: Literal["webhook", "stream"] = "webhook"
    url: Annotated[str, Field(max_length=2048)] | None = Field(None, description="webhook target (https)")

    @model_validator(mode="after")
    def _url_iff_webhook(self):
        if (self.delivery == "webhook") != (self.url is not None):
            raise ValueError("a webhook subscription needs `url`; a stream subscription takes none")
        return self


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    url: Annotated[str, Field(max_length=2048)] | None = None
    key_types: list[KeyType] | None = Field(None, min_length=1, max_length=2)
    topics: list[Topic] | None = Field(None, max_length=20)
    tickers: list[Ticker] | None = Field(None, max_length=200)
    min_severity: Severity | None = None
    min_relevance: Relevance | None = Field(None, description="null clears it")
    enabled: bool | None = Field(None, description="true re-enables a disabled subscription and clears its failures")


class SubscriptionPublic(BaseModel):
    id: int
    name: str
    delivery: Literal["webhook", "stream"]
    url: str | None
    key_types: list[str]
    topics: list[str]
    tickers: list[str]
    min_severity: str
    min_relevance: float | None = None
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str | None = Field(description="HMAC key of the webhook signature; shown only in this response")


class DeliveryAttemptPublic(BaseModel):
    id: int
    delivery_id: int
    alert_event_id: int
    attempt: int
    at: datetime
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryLog(BaseModel):
    items: list[DeliveryAttemptPublic]
    next_cursor: str | None


# --- scoring -------------------------------------------------------------------------------
class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, Field(min_length=1, max_length=20_000)]] = Field(min_length=1, max_length=64)

    @field_validator("texts")
    @classmethod
    def _not_blank(cls, v: list[str]) -> list[str]:
        if any(not t.strip() for t in v):
            raise ValueError("texts must not be blank")
        return v


class PredictionPublic(BaseModel):
    topic: str
    topic_confidence: float
    topic_probs: dict[str, float]
    sentiment: str
    sentiment_probs: dict[str, float]
    score: float
    truncated: bool
    entities: list[EntityPublic] = Field([], description="who the text is about (symbol directory), most relevant "
                                                         "first; spans index into the text as sent")


class ScoreResponse(BaseModel):
    model_version: str
    items: list[PredictionPublic]


class WordAttributionPublic(BaseModel):
    word: str
    start: int = Field(description="character offset of the word in `text`")
    end: int
    sentiment: float = Field(description="change of P(positive) - P(negative) due to the word (negative: "
                                         "the word pushes the text negative)")
    topic: float = Field(description="change of P(predicted topic) due to the word")


class ExplanationPublic(BaseModel):
    source: str
    id: str
    model_version: str
    text: str
    prediction: PredictionPublic
    words: list[WordAttributionPublic]
    truncated_words: int
    method: str
    entities: list[EntityPublic] = Field([], description="who the event is about, most relevant first (as in "
                                                         "GET /v1/events)")


# --- feedback ------------------------------------------------------------------------------
class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: Topic | None = None
    sentiment: Sentiment | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _something(self):
        if self.topic is None and self.sentiment is None:
            raise ValueError("give a corrected `topic`, `sentiment` or both")
        return self


class FeedbackPublic(BaseModel):
    id: int
    source: str
    event_id: str
    published_at: datetime
    topic: str | None
    sentiment: str | None
    note: str | None
    created_by: str
    created_at: datetime


class FeedbackPage(BaseModel):
    items: list[FeedbackPublic]
    next_cursor: str | None


# --- stories -------------------------------------------------------------------------------
class StoryPublic(BaseModel):
    story_id: str = Field(description="`source/id` of its first event (GET /v1/stories/{story_id}; a story "
                          "first seen before migration 0011: the bare id)")
    source: str = Field(description="the source of its first event")
    first_at: datetime = Field(description="when its first event was published")
    last_at: datetime = Field(description="its latest copy")
    copies: int = Field(description="items of the story stored so far, the first included")
    sources: list[str] = Field(description="sources that carried it (at most 16)")
    keys: list[str] = Field(description="the companies its first event names")
    headline: str | None = Field(description="its first event's title (null: none, or that day is archived)")
    text: str | None = Field(description="its first event's text (null when that day is archived)")
    topic: str | None
    sentiment: str | None
    score: float | None


class StoryPage(BaseModel):
    items: list[StoryPublic]
    next_cursor: str | None


class StoryDetail(StoryPublic):
    events: list[EventPublic] = Field(description="its events, oldest first, one page")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page of events")
