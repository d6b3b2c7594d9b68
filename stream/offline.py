"""Drive the spike detector offline, the way the worker does, from scored events in memory:
batches become per-key slice counts, partitions report event-time marks, the watermark is the
minimum over partitions. Used by tests and bench/alerts.py; no Kafka, no Postgres.

    alerts = replay(events, DetectorConfig(), partitions=4, batch=128, seed=1)   # backlog order
    alerts = replay(events, DetectorConfig(), partitions=1)                      # event-time order

`events`: (ts seconds, event id, negative, topic, tickers[, {ticker: negative}[, (story id, novel,
copies)]]) tuples, counted by stream.counting exactly as the worker counts its stored rows (copies
of a story weighted by the config's story_copy_weight / story_copy_cap, the stories listed in the
cells); `event_tuple` makes one from a decoded event and its linked entities with the worker's
ticker keys (stream.counting.ticker_keys). Stored rows carry the story the worker gave them
(STORED_EVENTS_SQL); a feed replayed without a database gets its stories from `with_stories`
(core.stories.Stories.assign_offline: the same clustering, from an empty index).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

import orjson

from stream.detector import Cell, Decision, DetectorConfig, KeyState, SpikeDetector
from stream.counting import count_cells, ticker_keys
from stream.records import Counts
from stream.watermark import WatermarkView

Event = tuple  # (ts, event id, negative, topic, tickers[, {ticker: negative}[, (story id, novel, copies)]])

# The rows a worker stored, as `replay` takes them: each with its counted entities' own sentiment,
# which the worker's ticker counts used (stream.pipeline). Run it with any client; rows → stored_event.
STORED_EVENTS_SQL = """SELECT e.published_at, e.source, e.id, e.sentiment, e.topic, e.tickers,
    (SELECT jsonb_object_agg(x.ticker, x.sentiment = 'negative') FROM event_entity x
     WHERE x.source = e.source AND x.event_id = e.id AND x.published_at = e.published_at AND x.counted),
    e.story_id, e.novel, e.copies
FROM scored_event e"""


def stored_event(row) -> tuple:
    """One row of STORED_EVENTS_SQL as an input of `replay`."""
    published_at, source, eid, sentiment, topic, tickers, own, *story = row
    story = (story[0], bool(story[1]), int(story[2])) if len(story) == 3 and story[0] is not None else None
    own = orjson.loads(own) if isinstance(own, (str, bytes)) else own  # asyncpg hands jsonb over as text
    return (published_at.timestamp(), f"{source}/{eid}", sentiment == "negative", topic, tuple(tickers), own or {},
            story)


def with_stories(events: Sequence[Event], items) -> list[tuple]:
    """`events` with their stories: `items` (core.stories.Item, one per event, same order) clustered
    as the worker's index would from empty (Stories.assign_offline); a feed replay without a database."""
    from core.stories import Stories

    assigned = Stories().assign_offline(list(items))
    return [tuple(e[:5]) + ((e[5] if len(e) > 5 else None), (a.story_id, a.novel, a.copies))
            for e, a in zip(events, assigned)]


def cells_of(batch: list[Event], slice_s: int, cfg: DetectorConfig | None = None) -> dict[str, list[Cell]]:
    """The worker's counting (stream.counting.count_cells, stories weighted and listed as the
    config says), as the detector's cells."""
    cfg = cfg or DetectorConfig(slice_s=slice_s)
    counted = count_cells(batch, slice_s, cfg.samples, cfg.story_copy_weight, cfg.story_copy_cap, stories=True)
    return {k: Counts(k, list(v.values())).detector_cells() for k, v in counted.items()}


def event_tuple(event, negative: bool, topic: str, entities, min_relevance: float,
                entity_negative: dict[str, bool] | None = None) -> tuple:
    """An input of `replay` from a decoded NewsEvent, its scores and its linked entities, with the
    ticker keys the worker counts for it (stream.counting.ticker_keys) and, where given, each
    entity's own negative flag."""
    keys = ticker_keys(entities, min_relevance)
    own = {t: v for t, v in (entity_negative or {}).items() if t in keys}
    return (event.published_at.timestamp(), f"{event.source}/{event.id}", negative, topic, keys, own)


class OfflineDetection:
    def __init__(self, cfg: DetectorConfig, partitions: int, lateness_s: float = 30.0):
        self.det, self.cfg, self.lateness = SpikeDetector(cfg), cfg, lateness_s
        self.view = WatermarkView(frozenset(str(p) for p in range(partitions)), cfg.pause_s, lateness_s)
        self.states: dict[str, KeyState] = {}
        self.active: set[str] = set()  # keys with something to finalise (the worker keeps the same set)
        self.decisions: list[Decision] = []
        self.late = 0
        self.batch_id = 0
        self.swept = float("-inf")
        self.expired = 0  # key states deleted after key_ttl_s of quiet (the worker deletes them from its table)

    def batch(self, events: list[Event]) -> None:
        self.batch_id += 1
        for key, cells in cells_of(events, self.cfg.slice_s, self.cfg).items():
            st = self.states.setdefault(key, KeyState())
            out, late = self.det.add(st, key, cells, self.batch_id, self.view.value, tuple(self.view.pauses))
            self.decisions += out
            self.late += late
            (self.active.discard if st.quiet() else self.active.add)(key)

    def marks(self, marks: dict[str, list]) -> None:
        wm = self.view.update(marks)
        if wm is None:
            return
        pauses = tuple(self.view.pauses)
        for key in sorted(self.active):
            st = self.states[key]
            self.decisions += self.det.advance(st, key, wm, pauses)
            if st.quiet():
                self.active.discard(key)
        ttl = self.cfg.key_ttl_s
        if ttl and wm - self.swept >= min(ttl / 4, 3600.0):  # as stream.detection sweeps its table
            self.swept, last = wm, int(wm // self.cfg.slice_s) - 1
            for key in [k for k, st in self.states.items() if self.det.expired(st, last)]:
                del self.states[key]
                self.active.discard(key)
                self.expired += 1


def replay(events: list[Event], cfg: DetectorConfig, partitions: int = 1, batch: int = 128, seed: int = 0,
           lateness_s: float | None = None) -> OfflineDetection:
    """Events split by id over `partitions` (each in event-time order, like a producer that
    sends as it goes), consumed in batches from a randomly chosen partition each time, the
    way a worker catches up a backlog. With one partition this is event-time order."""
    lateness_s = cfg.lateness_s if lateness_s is None else lateness_s
    rng = random.Random(seed)
    parts: list[list[Event]] = [[] for _ in range(partitions)]
    for e in sorted(events):
        parts[zlib.crc32(e[1].encode()) % partitions].append(e)
    off = OfflineDetection(cfg, partitions, lateness_s)
    pos, newest = [0] * partitions, [None] * partitions
    while True:
        open_parts = [p for p in range(partitions) if pos[p] < len(parts[p])]
        if not open_parts:
            break
        p = rng.choice(open_parts)
        chunk = parts[p][pos[p]: pos[p] + batch]
        pos[p] += len(chunk)
        off.batch(chunk)
        newest[p] = chunk[-1][0]
        off.marks({str(q): [None if newest[q] is None else newest[q] - lateness_s, pos[q] >= len(parts[q])]
                   for q in range(partitions)})
    last = max(e[0] for e in events) + cfg.window_s * 2 + lateness_s
    off.marks({str(q): [last, True] for q in range(partitions)})
    return off
