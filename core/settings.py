"""One Settings object shared by the worker and the API, read once from the environment
(prefix FINSENT_, plus DATABASE_URL) or .env; inner parts get explicit values from it (Faust is
passed its broker, never reads the environment itself). Every field is documented in README.md
and checked against docker-compose.yml by a test."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "artifacts" / "finsent-minilm-v2"
DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINSENT_", env_file=".env", extra="ignore", frozen=True)

    # services
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = Field("postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/finsent",
                              validation_alias="DATABASE_URL")
    # topics
    topic_news: str = "finsent.news"
    topic_social: str = "finsent.social"
    topic_scored: str = "finsent.scored"
    topic_alerts: str = "finsent.alerts"
    topic_deadletter: str = "finsent.deadletter"
    partitions: int = Field(4, ge=1, le=1024)
    replication: int = Field(1, ge=1, le=7)  # replicas of every topic finsent creates (Faust's own too); 3 on a
    # three-broker cluster with min.insync.replicas=2 (producers use acks=all)
    consumer_group: str = "finsent-worker"
    session_timeout_s: float = Field(60.0, ge=6, le=300)  # a worker that dies (kill -9) leaves the group after
    # this long and its partitions move on. 10 s made a 10 s broker pause expire every session, and a rebalance
    # during a Postgres outage then lost a batch (docs/benchmarks.md#chaos): Faust's 60 s until that is fixed
    # scoring
    model_dir: Path = DEFAULT_MODEL_DIR
    # the shared training and evaluation files (finsent train/teacher/evaluate/feedback, the model benches);
    # default ../shared/data beside the repository, as before this setting existed
    data_dir: Path = Path(__file__).resolve().parents[2] / "shared" / "data"
    backend: Literal["onnx", "torch", "tensorrt"] = "onnx"
    precision: Literal["auto", "fp32", "fp16", "int8"] = "auto"
    device: str = "cpu"  # cpu | cuda | cuda:N (torch and tensorrt backends; onnx uses CUDA EP when given)
    model_poll_s: float = Field(5.0, gt=0)  # how often the worker (and the API) look at MODEL_DIR/current
    ort_threads: int = Field(0, ge=0)  # ONNX Runtime in the worker: N intra-op threads; 0 = one single-threaded run per CPU
    # (CPU affinity and the cgroup quota: stream.app.usable_cpus)
    max_batch: int = Field(128, ge=1, le=4096)
    max_wait_s: float = Field(0.25, gt=0, le=10)
    max_text_chars: int = Field(20_000, ge=1)
    max_future_skew_s: float = Field(300.0, ge=0)  # published_at further ahead of receive time → dead letter
    dedupe_window_h: float = Field(72.0, ge=0)  # an item (source, id) re-sent with another published_at less than
    # this far from the stored one is a duplicate (the first stored wins); 0 = off: each time is another row
    # personal data masked in text and title before scoring, storing or publishing (core/masking.py):
    # a comma-separated subset of email, phone, card, handle; empty turns masking off
    mask: Annotated[tuple[Literal["email", "phone", "card", "handle"], ...], NoDecode] = ("email", "phone")
    # entities (models/entities): the symbol directory (unset: the file `finsent symbols load` wrote, else the
    # shipped default; FINSENT_SYMBOLS_FILE is also what that command writes to) and the relevance at or above
    # which an entity counts for its ticker (rollups, the detector's ticker keys, the API's ticker= default)
    symbols_file: Path | None = None
    entity_min_relevance: float = Field(0.5, ge=0, le=1)
    # false: the worker neither links nor reads per-entity sentiment (no event_entity rows); an item's ticker
    # keys are its feed tags, else its cashtags, as before entities (bench/pipeline.py --entities-ab)
    entities: bool = True
    # detection (see stream/detector.py)
    slice_s: int = Field(10, ge=1)  # event-time resolution of the detector's counts
    window_s: int = Field(120, ge=1)  # sliding span a surge is counted over (a multiple of slice_s)
    lateness_s: float = Field(30.0, ge=0)  # out-of-orderness allowed within one input partition
    idle_partition_s: float = Field(5.0, gt=0)  # a caught-up partition silent this long stops holding the watermark
    watermark_stall_s: float = Field(120.0, gt=0)  # a watermark held back this long → /health 503 (stream/detection.py)
    stall_s: float = Field(120.0, gt=0)  # lag behind a committed offset that has not moved this long → /health 503
    pause_s: float = Field(900.0, gt=0)  # a watermark jump this large is recorded as a pause (reported only: the
    # detector decides pauses from each key's own silence, see stream/detector.py)
    detector_min_count: int = Field(8, ge=1)
    detector_p: float = Field(1e-6, gt=0, lt=1)  # Poisson tail probability that opens an alert
    detector_warmup_s: float = Field(600.0, ge=0)  # before this much history a key is tested against the prior
    detector_cooldown_s: float = Field(600.0, ge=0)
    stories: bool = True  # the worker assigns stories (core/stories.py) and the detector counts stories, not copies.
    # (The stall once seen with it on in a two-worker rebalance was Faust's table recovery losing changelog records
    # a fetch returned while the flow was stopped, not the stories: stream.kafka_compat.put_back; docs/stories.md.)
    # With the model the worker keeps ~0.92 of its rate; `finsent stories backfill` works either way
    story_cache_keys: int = Field(300_000, ge=0)  # band keys a worker remembers as held by a live story (~93 B each;
    # the candidate probe skips them: core.stories.KeyCache); 0 turns the cache off
    detector_story_copy_weight: float = Field(0.1, ge=0, le=1)  # what a copy of a story already counted adds
    detector_story_copy_cap: float = Field(1.0, ge=0)  # all copies of one story together add at most this much
    detector_key_ttl_s: float = Field(86400.0, ge=0)  # a key quiet this long (event time) is forgotten; 0 = never
    detector_max_keys: int = Field(100_000, ge=0)  # detector keys held per worker (~3 KB each); past it the quiet
    # ones seen longest ago are forgotten first (a flood of distinct cashtags); 0 = no cap
    # history (core/history.py): days kept per kind of row, 0 = forever; raw days past retention are archived
    # to FINSENT_ARCHIVE_DIR (Parquet, verified) and their partitions dropped by the worker's upkeep
    retention_raw_days: int = Field(30, ge=0)  # scored_event and the rows hanging off an event (entities)
    retention_minute_days: int = Field(90, ge=0)  # event_rollup_minute
    retention_5m_days: int = Field(400, ge=0)  # event_rollup_5m
    retention_hour_days: int = Field(0, ge=0)  # event_rollup_hour
    retention_alert_days: int = Field(0, ge=0)  # resolved alerts
    retention_restore_days: int = Field(7, ge=0)  # a restored day stays this long before upkeep drops it again
    retention_drop_unarchived: bool = False  # with no FINSENT_ARCHIVE_DIR: True drops old days for good, False
    # (default) keeps them (finsent_history_behind = 1, a warning each hour)
    archive_dir: Path | None = None
    # worker web (health + metrics)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # worker: bounds of every wait (stream/sink.py DbTimeouts; stream/app.py delivery)
    db_statement_timeout_s: float = Field(60.0, ge=0)  # server statement_timeout; 0 = none
    db_lock_timeout_s: float = Field(10.0, ge=0)  # server lock_timeout: a table left locked fails the write (retried, 503)
    db_idle_in_transaction_timeout_s: float = Field(60.0, ge=0)  # server idle_in_transaction_session_timeout
    db_command_timeout_s: float = Field(90.0, gt=0)  # client side: a query on a half-open connection gives up
    kafka_send_timeout_s: float = Field(60.0, gt=0)  # delivery of counts, dead letters, alerts; past it the worker stops
    # API (api/): bind address, auth, webhooks
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_reads_open: bool = True  # False: every read needs an API key with the `read` scope
    api_cors_origins: list[str] = []
    webhook_allow_private: bool = False  # allow loopback/private/link-local targets (tests, demo)
    webhook_allow_http: bool = False  # allow plain http:// targets (tests, demo)
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    webhook_max_failures: int = Field(10, ge=1)  # consecutive failures that disable a subscription
    webhook_retry_base_s: float = Field(2.0, gt=0)  # first retry delay; doubles per attempt, with jitter
    webhook_retry_max_s: float = Field(600.0, gt=0)  # cap of one retry delay
    sse_keepalive_s: float = Field(15.0, gt=0, le=300)  # comment line sent on an idle live stream
    # API limits (api/README.md): every wait bounded, every resource capped
    api_pool_size: int = Field(20, ge=1, le=500)  # Postgres connections per API process (one per request at most;
    # 10 gave 71 'database busy' 503s under 200 mixed clients + 1,000 streams, 20 none: docs/api.md)
    api_series_cache_mb: float = Field(64.0, ge=0)  # series answers kept per API process until the rollups under
    # them change (api/series_cache.py); 0 = off
    api_read_url: str | None = None  # a read replica for the API's reads (history, series, entities); writes
    # (keys, subscriptions, deliveries, feedback) always go to DATABASE_URL. Unset: everything on DATABASE_URL
    api_pool_timeout_s: float = Field(5.0, gt=0, le=120)  # wait for a free connection, then 503 + Retry-After
    api_statement_timeout_s: float = Field(10.0, gt=0, le=600)  # per statement and per lock wait (server side)
    api_max_body_bytes: int = Field(4 << 20, ge=1024)  # larger request bodies get 413 before they are read
    api_send_timeout_s: float = Field(30.0, gt=0, le=600)  # a client that takes no piece of its answer this long is cut off
    api_header_timeout_s: float = Field(10.0, gt=0, le=600)  # a request head (line + headers) not complete this long
    # after the connection opened or the request's first byte: 408 and the connection closed (slowloris)
    api_body_timeout_s: float = Field(30.0, gt=0, le=3600)  # a request body not all in this long after the app
    # starts reading it: 408 and the connection closed
    api_cursor_secret: SecretStr | None = None  # HMAC key of page cursors; unset: random per process
    api_revocation_check_s: float = Field(2.0, gt=0, le=60)  # open streams of a revoked key end within this
    api_max_streams_per_key: int = Field(10, ge=1)  # open live streams (SSE + WebSocket) per API key
    api_max_streams_per_client: int = Field(20, ge=1)  # and per client address, keyed or not
    api_max_subscriptions_per_key: int = Field(100, ge=1)
    api_rate_limit_per_s: float = Field(20.0, ge=0)  # requests/s per API key (anonymous: per address); 0 = off
    api_rate_burst: int = Field(40, ge=1)  # requests allowed at once above the steady rate
    api_shutdown_grace_s: float = Field(5.0, ge=0, le=120)  # on SIGTERM, open requests get this long

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        return v.replace("postgresql://", "postgresql+asyncpg://", 1) if v.startswith("postgresql://") else v

    @field_validator("mask", mode="before")
    @classmethod
    def _mask(cls, v):
        if isinstance(v, str):
            return tuple(x.strip().lower() for x in v.split(",") if x.strip())
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE.match(v):
            raise ValueError("device must be cpu, cuda or cuda:N")
        return v

    @field_validator("window_s")
    @classmethod
    def _window(cls, v: int, info) -> int:
        slice_s = info.data.get("slice_s", 10)
        if v % slice_s:
            raise ValueError(f"window_s ({v}) must be a multiple of slice_s ({slice_s})")
        return v

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.topic_news, self.topic_social)

    @property
    def asyncpg_dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
