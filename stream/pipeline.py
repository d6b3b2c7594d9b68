"""The scoring step as plain objects: validate → score → store → count. No Faust in here, so
a test or a replay drives it directly; the agent only moves bytes in and acks what `process`
returned from.

`BatchProcessor.process(items)` returns only when every item is stored or dead-lettered with
its reason. A model error on some items isolates them by bisection (they go to the dead-letter
topic); a model that fails a known-good canary text too is broken, not the data: the batch is
held and retried with backoff while /health reports it. Postgres failures are retried by the
sink; rows Postgres refuses are isolated the same way. Redelivered messages are absorbed by
the idempotent insert (counted in finsent_duplicates_total), never dead-lettered.

Entities: every scored item is linked (models.entities.Linker, one per process, built on first use
from Settings.symbols_file or the user's / shipped directory); its entity rows are stored with it,
and its ticker keys (the `tickers` column, the rollups, the detector's counts) are the entities at
or above Settings.entity_min_relevance plus its cashtags and feed tags (stream.counting.ticker_keys).
Each entity's sentiment comes from `entity_sentiments`, the one place to change for a model head.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import orjson
from prometheus_client import Histogram

from core import logs
from models.entities import Entity, Linker
from models.entity_scores import ITEM, ITEM_SHARED, EntityScore, entity_sentiments  # noqa: F401 - re-exported
from core.masking import Masker
from models.runtime import Prediction, Scorer
from stream import metrics
from core.stories import Item as StoryItem, Stories, names_of
from stream.counting import COPY_CAP, COPY_WEIGHT, count_cells, counted, ticker_keys
from stream.records import Counts, Invalid, NewsEvent, decode
from stream.sink import PostgresSink, Rejected
from stream.watermark import PartitionClock

log = logs.get("finsent.pipeline")
LINK_LATENCY = Histogram("finsent_link_latency_seconds", "Entity linking per batch",
                         buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25))
# The model's failures are isolated (bisected, dead-lettered) or hold the batch; a pyo3 panic of the
# Rust tokenizer is a BaseException (PanicException), so the net is BaseException less these:
NOT_MODEL_ERRORS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)
CANARY = "Shares of the company fell sharply after it cut its full-year outlook."


@dataclass(frozen=True)
class Incoming:
    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_s: float | None = None  # Kafka append time

    @property
    def tp(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(frozen=True)
class Dead:
    item: Incoming
    reason: str
    original_bytes: int | None = None  # set when the value was cut to fit the producer's request size
    original_sha256: str = ""

    def headers(self) -> dict[str, bytes]:
        i = self.item
        out = {"reason": self.reason.encode(), "source_topic": i.topic.encode(),
               "source_partition": str(i.partition).encode(), "source_offset": str(i.offset).encode()}
        if self.original_bytes is not None:
            out |= {"truncated_from": str(self.original_bytes).encode(), "original_sha256": self.original_sha256.encode()}
        return out


def fitted(d: Dead, max_bytes: int) -> Dead:
    """A dead letter whose key and value fit in `max_bytes`: a longer value keeps its first bytes and
    says so (headers truncated_from, original_sha256; source topic/partition/offset name the whole
    record). A record the broker accepted can be larger than the producer may send (1,000,000 bytes
    against the broker's 1,048,588), and a dead letter that cannot be sent would stop the worker."""
    value, key = d.item.value, d.item.key or b""
    if value is None or len(value) + len(key) <= max_bytes:
        return d
    cut = value[:max(0, max_bytes - len(key))]
    return Dead(dataclasses.replace(d.item, value=cut), d.reason, len(value), hashlib.sha256(value).hexdigest())


class Publisher(Protocol):
    async def dead(self, dead: list[Dead]) -> None: ...
    async def counts(self, records: list[tuple[str, bytes]]) -> None: ...


@dataclass
class Health:
    """What the batch path is waiting for, if anything (served on /health)."""

    model_error: str = ""
    since: float = 0.0
    batches_failed: dict[str, int] = field(default_factory=dict)


def row(e: NewsEvent, p: Prediction, ingested_at: datetime, scored_at: datetime,
        tickers: list[str] | None = None) -> tuple:
    """The scored_event row; `tickers`: the item's ticker keys (default: its tags, else cashtags)."""
    sp = p.sentiment_probs
    return (e.source, e.id, e.published_at, e.text, e.title, e.url, e.lang,
            e.all_tickers() if tickers is None else tickers, ingested_at,
            scored_at, p.topic, p.topic_confidence, p.sentiment, sp["negative"], sp["neutral"], sp["positive"],
            p.score, p.model_version, p.truncated)


# -- entities ------------------------------------------------------------------------------
# entity_sentiments lives in models.entity_scores so that the API and `finsent predict` use the same one


def link_event(linker: Linker, e: NewsEvent) -> list[Entity]:
    """The event's entities: text and the feed's tags; the title counts as the lead when the text starts with it."""
    title_end = len(e.title) if e.title and e.text.startswith(e.title) else None
    return linker.link(e.text, tickers=e.tickers, title_end=title_end)


def entity_rows(e: NewsEvent, ents: list[Entity], scores: list[EntityScore], min_relevance: float,
                directory_version: str) -> list[tuple]:
    """event_entity rows (core.events.ENTITY_COLUMNS order)."""
    return [(e.source, e.id, e.published_at, x.ticker, x.name, float(x.relevance), s.sentiment, float(s.score),
             s.source, orjson.dumps([list(sp) for sp in x.spans]).decode(), list(x.sources),
             counted(x, min_relevance), directory_version[:80])
            for x, s in zip(ents, scores) if 0 < len(x.ticker) <= 16]


def count_records(rows: list[tuple], new: set, slice_s: int, samples: int = 5,
                  entity_negative: dict | None = None, stories: dict | None = None,
                  copy_weight: float = COPY_WEIGHT, copy_cap: float = COPY_CAP) -> list[tuple[str, dict]]:
    """Per aggregation key, the new rows counted per event-time slice:
    [slice, n, k, ids, {ticker: [n, k]}(, {story: [copies, [sources]]})].
    An event stored once is counted once, even when the batch held it twice (stream.counting).
    `entity_negative`: (source, id) -> {ticker: negative}, each entity's own sentiment for its key;
    `stories`: (source, id) -> (story id, novel, copies), which weights n and k (stream.counting)."""
    own = entity_negative or {}
    items = ((r[2].timestamp(), f"{r[0]}/{r[1]}", r[12] == "negative", r[10], r[7], own.get((r[0], r[1])),
              (stories or {}).get((r[0], r[1])))
             for r in rows if (r[0], r[1]) in new)
    cells_of = count_cells(items, slice_s, samples, copy_weight, copy_cap, stories=stories is not None)
    return [(key, {"kind": "counts", "key": key, "cells": list(cells.values())}) for key, cells in cells_of.items()]


def once(rows: list[tuple]) -> list[tuple]:
    """The batch's rows with one per (source, id), the first (an item is its source and id; the batch's
    maps are keyed so): a later copy, the same or re-sent with another published_at, is counted as a
    duplicate here, as the sink counts one already stored."""
    seen: dict[tuple, tuple] = {}
    for r in rows:
        first = seen.setdefault((r[0], r[1]), r)
        if first is not r:
            metrics.DUPLICATES.inc()
            if first[2] != r[2]:
                metrics.RETIMED.inc()
    return list(seen.values()) if len(seen) < len(rows) else rows


@dataclasses.dataclass
class Scored:
    """A scored batch waiting to be stored."""
    items: list[Incoming]
    good: list[tuple[Incoming, NewsEvent]]
    rows: list[tuple]
    items_of: dict
    dead: list[Dead]
    entities_of: dict = field(default_factory=dict)  # (source, id) -> event_entity rows
    bands_of: dict = field(default_factory=dict)  # (source, id) -> (story band keys, companies named) (core.stories)


class BatchProcessor:
    def __init__(self, scorer: Scorer, sink: PostgresSink, publisher: Publisher, clock: PartitionClock, *,
                 slice_s: int = 10, max_chars: int = 20_000, max_skew_s: float = 300.0, max_backoff_s: float = 5.0,
                 run_blocking: Callable[..., Awaitable] | None = None, masker: Masker | None = None,
                 max_deadletter_bytes: int = 1_000_000 - 16_384, linker: Linker | None = None,
                 entity_min_relevance: float | None = None, settings=None, stories: Stories | None = None):
        self.scorer, self.sink, self.publisher, self.clock = scorer, sink, publisher, clock
        self.masker = masker or Masker(())
        self.slice_s, self.max_chars, self.max_skew_s, self.max_backoff_s = slice_s, max_chars, max_skew_s, max_backoff_s
        self.max_deadletter_bytes = max_deadletter_bytes
        self.run_blocking = run_blocking or (lambda f, *a: asyncio.get_running_loop().run_in_executor(None, f, *a))
        self.health = Health()
        self._linker, self._settings = linker, settings
        self.entity_min_relevance = entity_min_relevance
        self.stories = stories  # None: no story assignment (counts unweighted, as before stories)
        self._story_keys = (0, 0)  # the key cache's counters at the last store (for the metric)

    @property
    def linker(self) -> Linker:
        """One per process, built on first use (about 10 ms for the shipped directory) when none was given."""
        if self._linker is None:
            from models.entities import Directory

            self._linker = Linker(Directory.configured(self._setting("symbols_file")))
            log.info("entity linker ready", directory=self._linker.directory.version,
                     symbols=len(self._linker.directory))
        return self._linker

    def _setting(self, name: str):
        if self._settings is None:
            from core.settings import get_settings

            self._settings = get_settings()
        return getattr(self._settings, name)

    @property
    def min_relevance(self) -> float:
        if self.entity_min_relevance is None:
            self.entity_min_relevance = float(self._setting("entity_min_relevance"))
        return self.entity_min_relevance

    def prepare(self, items: list[Incoming], now: float) -> tuple[list[tuple[Incoming, NewsEvent]], list[Dead]]:
        good, dead = [], []
        for item in items:
            metrics.CONSUMED.labels(item.topic).inc()
            try:
                event = decode(item.value, self.max_chars, now, self.max_skew_s)
            except Invalid as exc:
                dead.append(Dead(item, str(exc)))
                continue
            if self.masker:  # personal data never reaches the model, the table or a topic
                text, title = self.masker(event.text), event.title and self.masker(event.title)
                if text != event.text or title != event.title:
                    event = event.model_copy(update={"text": text, "title": title})
            good.append((item, event))
        return good, dead

    def _masked(self, dead: list[Dead]) -> list[Dead]:
        """Dead letters keep the original bytes for a replay, with personal data masked in them."""
        if not self.masker:
            return dead
        out = []
        for d in dead:
            try:
                text = d.item.value.decode() if d.item.value is not None else None
            except UnicodeDecodeError:
                out.append(d)  # not text: nothing a pattern could find
                continue
            masked = text if text is None else self.masker(text).encode()
            out.append(d if masked == d.item.value else Dead(dataclasses.replace(d.item, value=masked), d.reason))
        return out

    async def process(self, items: list[Incoming]) -> None:
        """Store or dead-letter every item; returns only then (may wait while something is down)."""
        await self.store(await self.score(items))

    async def score(self, items: list[Incoming]) -> Scored:
        """First half of `process`: decode, mask and score (the model runs in a thread). The worker
        scores the next batch while the previous one is stored, so the model is not idle during
        the Postgres round trips; nothing is acked before `store` returns."""
        good, dead = self.prepare(items, time.time())
        ingested_at = datetime.now(timezone.utc)
        preds, model_dead = await self._score(good)
        scored = [(i, e, p) for (i, e), p in zip(good, preds) if p is not None]
        keys, entities_of = (await self.run_blocking(self._entities, scored) if scored and self._setting("entities")
                             else ({}, {}))
        scored_at = datetime.now(timezone.utc)
        rows = once([row(e, p, ingested_at, scored_at, keys.get((e.source, e.id))) for _, e, p in scored])
        items_of = {(e.source, e.id): i for i, e, _ in scored}
        bands_of = await self.run_blocking(self._bands, rows) if rows and self.stories is not None else {}
        return Scored(items, good, rows, items_of, dead + model_dead, entities_of, bands_of)

    def _bands(self, rows: list[tuple]) -> dict:
        """Story band keys of the rows (core.stories.Signer) and the companies each names, off the
        event loop and outside the store transaction, so that the stories' advisory lock is held only
        for the SQL and the batch's decisions."""
        bands = self.stories.signer.bands([r[3] for r in rows], [r[7] for r in rows])
        return {(r[0], r[1]): (tuple(b), names_of(r[3], r[7])) for r, b in zip(rows, bands)}

    def _entities(self, scored: list) -> tuple[dict, dict]:
        """Link every scored item: (ticker keys per event, event_entity rows per event). A linker
        failure on an item is logged and leaves that item with its tags/cashtags as keys."""
        if not scored:
            return {}, {}
        t0 = time.perf_counter()
        linker, cut = self.linker, self.min_relevance
        links = []
        for _, e, _ in scored:
            try:
                links.append(link_event(linker, e))
            except Exception as exc:  # noqa: BLE001 - a linker bug must not hold the stream
                log.error("entity linking failed; item keeps its tags", event=f"{e.source}/{e.id}",
                          error=repr(exc)[:300])
                links.append(None)
        sents = entity_sentiments(self.scorer, [(e.text, p) for _, e, p in scored], [x or [] for x in links])
        version = linker.directory.version
        keys, rows_of = {}, {}
        for (_, e, _), ents, ss in zip(scored, links, sents):
            if ents is None:
                continue
            keys[(e.source, e.id)] = ticker_keys(ents, cut)
            rows_of[(e.source, e.id)] = entity_rows(e, ents, ss, cut, version)
        LINK_LATENCY.observe(time.perf_counter() - t0)
        return keys, rows_of

    async def store(self, batch: Scored) -> None:
        """Second half: store the rows (or dead-letter what Postgres refuses) and the dead letters."""
        dead = batch.dead + await self._store(batch.rows, batch.items_of, batch.entities_of, batch.bands_of)
        if dead:
            for d in dead:
                metrics.DEADLETTERED.labels(metrics.reason_kind(d.reason)).inc()
            await self.publisher.dead([fitted(d, self.max_deadletter_bytes) for d in self._masked(dead)])
        self._observe(batch.items, batch.good)

    def _observe(self, items: list[Incoming], good: list[tuple[Incoming, NewsEvent]]) -> None:
        times = {(i.tp, i.offset): e.published_at.timestamp() for i, e in good}  # offsets repeat across partitions
        now = time.time()
        for item in items:
            self.clock.observe(item.tp, times.get((item.tp, item.offset)), item.offset)
            if item.timestamp_s:
                metrics.E2E_LATENCY.observe(max(0.0, now - item.timestamp_s))

    # -- the model --------------------------------------------------------------------------
    async def _score(self, good: list) -> tuple[list[Prediction | None], list[Dead]]:
        if not good:
            return [], []
        metrics.BATCH_SIZE.observe(len(good))
        delay = 0.5
        while True:
            try:
                t0 = time.perf_counter()
                preds = await self.run_blocking(self.scorer.predict, [e.text for _, e in good])
                metrics.MODEL_LATENCY.observe(time.perf_counter() - t0)
                self._model_ok()
                return preds, []
            except BaseException as exc:  # noqa: BLE001 - isolated below, or the batch is held
                if isinstance(exc, NOT_MODEL_ERRORS):
                    raise
                metrics.BATCH_FAILURES.labels("model").inc()
                if await self._model_works():
                    return await self._bisect(good, exc)
                self._model_broken(exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    async def _model_works(self) -> bool:
        try:
            await self.run_blocking(self.scorer.predict, [CANARY])
            return True
        except BaseException as exc:  # noqa: BLE001 - a failing canary means the model, not the data
            if isinstance(exc, NOT_MODEL_ERRORS):
                raise
            return False

    async def _bisect(self, good: list, exc: BaseException) -> tuple[list[Prediction | None], list[Dead]]:
        if len(good) == 1:
            return [None], [Dead(good[0][0], f"model error: {type(exc).__name__}: {exc}"[:500])]
        mid = len(good) // 2
        left, right = await self._score(good[:mid]), await self._score(good[mid:])
        return left[0] + right[0], left[1] + right[1]

    def _model_ok(self) -> None:
        if self.health.model_error:
            log.info("model recovered")
            metrics.HALTED.set(0)
        self.health.model_error = ""

    def _model_broken(self, exc: BaseException, delay: float) -> None:
        if not self.health.model_error:
            self.health.since = time.time()
        self.health.model_error = f"{type(exc).__name__}: {exc}"[:300]
        metrics.HALTED.set(1)
        log.error("model failing on a known-good text; holding the batch", error=self.health.model_error,
                  retry_in_s=delay)

    # -- Postgres ---------------------------------------------------------------------------
    async def _store(self, rows: list[tuple], items_of: dict, entities_of: dict | None = None,
                     bands_of: dict | None = None) -> list[Dead]:
        """Store rows and their entity rows (rejected rows isolated by bisection) and publish their counts."""
        if not rows:
            return []
        entities_of = entities_of or {}
        ents = [x for r in rows for x in entities_of.get((r[0], r[1]), ())]
        own = {k: {x[3]: x[6] == "negative" for x in v if x[11]} for k, v in entities_of.items()}
        story_items = self._story_items(rows, bands_of or {})
        try:
            new, oid = await self.sink.store(rows, lambda new, st=None: self._outbox(rows, new, own, st), ents,
                                             self.stories, story_items)
        except Rejected as exc:
            metrics.BATCH_FAILURES.labels("postgres").inc()
            if len(rows) == 1:
                return [Dead(items_of[(rows[0][0], rows[0][1])], f"postgres rejected: {exc}")]
            mid = len(rows) // 2
            return (await self._store(rows[:mid], items_of, entities_of, bands_of)
                    + await self._store(rows[mid:], items_of, entities_of, bands_of))
        metrics.SCORED.inc(len(new))
        metrics.DUPLICATES.inc(len(rows) - len(new))
        if self.stories is not None:
            cache, (served, probed) = self.stories.cache, self._story_keys
            metrics.STORY_KEYS.labels("cache").inc(cache.served - served)
            metrics.STORY_KEYS.labels("probe").inc(cache.probed - probed)
            self._story_keys = (cache.served, cache.probed)
        if oid is not None:
            await self.publish_outbox(oid, self._last_payload)
        return []

    def _story_items(self, rows: list[tuple], bands_of: dict) -> list[StoryItem]:
        """Every row of the batch, new or replayed (a replayed row keeps the story it has)."""
        if self.stories is None:
            return []
        return [StoryItem(r[0], r[1], r[2], r[3], tuple(r[7]), *bands_of.get((r[0], r[1]), (None, None)))
                for r in rows]

    def _outbox(self, rows: list[tuple], new: set, own: dict | None = None, stories: dict | None = None) -> bytes | None:
        weight = (self._setting("detector_story_copy_weight"), self._setting("detector_story_copy_cap")) \
            if stories is not None else (COPY_WEIGHT, COPY_CAP)
        records = count_records(rows, new, self.slice_s, entity_negative=own, stories=stories,
                                copy_weight=weight[0], copy_cap=weight[1])
        self._last_payload = orjson.dumps(records) if records else None
        return self._last_payload

    async def publish_outbox(self, oid: int, payload: bytes) -> None:
        """Send one outbox row's count records (tagged with its id as the batch id), then delete it."""
        records = [(key, Counts(key, rec["cells"], oid).encode()) for key, rec in orjson.loads(payload)]
        await self.publisher.counts(records)
        await self.sink.outbox_done(oid)
