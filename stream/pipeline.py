"""The scoring step as a plain object: validate → dedup → one runtime call per batch → rows
for Postgres and records for finsent.scored. No Kafka or Postgres in here, so a test or a
replay can drive it directly; the Faust agent only moves bytes in and out."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from models.runtime import Scorer
from stream import metrics
from stream.records import Invalid, NewsEvent, Scored, aggregation_keys, decode


@dataclass(frozen=True)
class Incoming:
    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Dead:
    item: Incoming
    reason: str

    def headers(self) -> dict[str, bytes]:
        i = self.item
        return {"reason": self.reason.encode(), "source_topic": i.topic.encode(),
                "source_partition": str(i.partition).encode(), "source_offset": str(i.offset).encode()}


@dataclass
class ScoredBatch:
    rows: list[tuple]
    records: list[tuple[str, Scored]]  # (kafka key, record)


class RecentIds:
    """Bounded memory of recently seen (source, id) pairs, oldest forgotten first."""

    def __init__(self, size: int):
        self.size, self.seen = size, OrderedDict()

    def check_and_add(self, key: tuple[str, str]) -> bool:
        if key in self.seen:
            self.seen.move_to_end(key)
            return True
        self.seen[key] = None
        if len(self.seen) > self.size:
            self.seen.popitem(last=False)
        return False


class BatchScorer:
    def __init__(self, scorer: Scorer, max_chars: int = 20_000, dedup_size: int = 100_000):
        self.scorer, self.max_chars, self.recent = scorer, max_chars, RecentIds(dedup_size)

    def prepare(self, items: list[Incoming]) -> tuple[list[NewsEvent], list[Dead]]:
        good, dead = [], []
        for item in items:
            metrics.CONSUMED.labels(item.topic).inc()
            try:
                event = decode(item.value, self.max_chars)
            except Invalid as exc:
                dead.append(Dead(item, str(exc)))
                continue
            if self.recent.check_and_add((event.source, event.id)):
                metrics.DUPLICATES.inc()
                dead.append(Dead(item, f"duplicate id: {event.source}/{event.id} seen recently"))
                continue
            good.append(event)
        return good, dead

    def score(self, events: list[NewsEvent], ingested_at: datetime | None = None) -> ScoredBatch:
        """Blocking (runs the model): call it from a thread."""
        if not events:
            return ScoredBatch([], [])
        ingested_at = ingested_at or datetime.now(timezone.utc)
        t0 = time.perf_counter()
        preds = self.scorer.predict([e.text for e in events])
        metrics.MODEL_LATENCY.observe(time.perf_counter() - t0)
        metrics.BATCH_SIZE.observe(len(events))
        scored_at = datetime.now(timezone.utc)
        out = ScoredBatch([], [])
        for e, p in zip(events, preds):
            tickers = e.all_tickers()
            sp = p.sentiment_probs
            out.rows.append((e.source, e.id, e.published_at, e.text, e.title, e.url, e.lang, tickers, ingested_at,
                             scored_at, p.topic, p.topic_confidence, p.sentiment, sp["negative"], sp["neutral"],
                             sp["positive"], p.score, p.model_version, p.truncated))
            for key_type, key in aggregation_keys(p.topic, tickers):
                agg = f"{key_type}:{key}"
                out.records.append((agg, Scored(key_type=key_type, key=key, source=e.source, id=e.id,
                                                published_at=e.published_at.isoformat(), topic=p.topic,
                                                sentiment=p.sentiment, score=p.score, model_version=p.model_version,
                                                tickers=tickers)))
        return out
