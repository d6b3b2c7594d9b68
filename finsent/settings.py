"""One Settings object per deployable, read once from the environment (prefix FINSENT_) or
.env; inner parts get explicit values from it (Faust is passed its broker, never reads the
environment itself)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.runtime import DEFAULT_ARTIFACT


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
    partitions: int = 4
    consumer_group: str = "finsent-worker"
    # scoring
    model_dir: Path = DEFAULT_ARTIFACT
    backend: str = "onnx"
    precision: str = "auto"
    ort_threads: int = 1  # ONNX Runtime intra-op threads in the worker; 0 = all cores
    max_batch: int = 128
    max_wait_s: float = 0.25
    max_text_chars: int = 20_000
    dedup_window: int = 100_000  # recently seen (source, id) pairs dropped before scoring
    # detection
    window_s: int = 60
    detector_min_count: int = 8
    detector_p: float = 1e-5  # Poisson tail probability that opens an alert
    detector_warmup_windows: int = 3
    detector_cooldown_windows: int = 5
    detector_lateness_windows: int = 2
    # worker web (health + metrics)
    web_host: str = "127.0.0.1"
    web_port: int = 6066

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        return v.replace("postgresql://", "postgresql+asyncpg://", 1) if v.startswith("postgresql://") else v

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.topic_news, self.topic_social)

    @property
    def asyncpg_dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
