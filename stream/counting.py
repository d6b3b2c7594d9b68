"""One counting function for the detector's input, shared by the worker (stream.pipeline,
from the rows a batch really inserted) and the offline replay (stream.offline): per aggregation
key and event-time slice, n items, k negative, a few sample ids of negatives, and per ticker
the negatives of a topic key. Each event id is counted once per call, however often it occurs
in the batch (a producer that sends an event twice, a replayed message in the same batch):
the rows themselves are stored once, so their counts must be too.

    count_cells([(ts, "wire/1", True, "M&A", ["ACME"])], slice_s=10)
    -> {"topic:M&A": {ts // 10: [slice, 1, 1, ["wire/1"], {"ACME": [1, 1]}]}, "ticker:ACME": {...}}

A topic cell counts per ticker [items, negatives], so that a topic's breadth test can take a
member's whole traffic out of the window (a member's ordinary burst brings neutral items too).

An item may carry a sixth element, {ticker: negative}: the entity's own sentiment, which its
ticker key counts instead of the item's (an item where Apple beats and Samsung slides is negative
for one key only). The ticker keys of an item are `ticker_keys(entities, min_relevance)`: the
entities at or above the relevance cut plus every cashtag and feed tag, the same in both paths.

An item may carry a seventh element, its story (core.stories): (story id, novel, copies so far).
Then n and k count stories, not copies (`story_weight`): the first item of a story, or an item
of no known story, adds 1; a later copy adds `copy_weight` (0.1), and the copies of one story
together add at most `copy_cap` (1.0), so one syndicated story is at most two "items" however
often it is reposted. With `stories=True` each cell also carries {story id: [negative copies,
[sources]]} for the negatives (at most `samples` stories; the source is the event id's prefix),
and a story's sample id is its first negative in the cell, so the evidence lists stories.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stream.records import aggregation_keys

# (event time s, event id, negative, topic, tickers[, {ticker: negative}[, (story id, novel, copies)]])
Item = tuple[float, str, bool, str, Sequence[str]] | tuple[float, str, bool, str, Sequence[str], Mapping[str, bool]] \
    | tuple[float, str, bool, str, Sequence[str], Mapping[str, bool] | None, tuple[str, bool, int] | None]
COPY_WEIGHT = 0.1  # stream.detector.DetectorConfig.story_copy_weight
COPY_CAP = 1.0  # ... story_copy_cap
ALWAYS_COUNTED = frozenset({"cashtag", "tag"})  # the author or the feed said so: never a passing mention
MAX_TICKER = 16  # scored_event.tickers, event_entity.ticker


def counted(entity, min_relevance: float) -> bool:
    """Does this entity count for its ticker (rollups, the detector's keys, subscriptions)?"""
    return 0 < len(entity.ticker) <= MAX_TICKER and (
        entity.relevance >= min_relevance or not ALWAYS_COUNTED.isdisjoint(entity.sources))


def ticker_keys(entities: Iterable, min_relevance: float) -> list[str]:
    """The tickers an item counts for: entities (models.entities.Entity) at or above the cut, and
    every cashtag or feed tag whatever its relevance."""
    return sorted({e.ticker for e in entities if counted(e, min_relevance)})


def story_weight(story, copy_weight: float = COPY_WEIGHT, copy_cap: float = COPY_CAP) -> float | int:
    """What one item adds to n (and k): 1 without a story or as its first item; a copy (the
    story's `copies`-th) adds copy_weight while the story's copies together stay within copy_cap.
    A row stored with stories off reads (None, None, None): no story, so 1."""
    if not story or story[0] is None or story[1] or not story[2] or story[2] <= 1:
        return 1  # (an int: counts without stories stay whole numbers, as before)
    return copy_weight if (story[2] - 1) * copy_weight <= copy_cap + 1e-9 else 0.0


SLICE_TICKERS = 256  # tickers a topic's cell carries, the busiest (stream.detector.DetectorConfig.slice_tickers)


def count_cells(items: Iterable[Item], slice_s: int, samples: int = 5, copy_weight: float = COPY_WEIGHT,
                copy_cap: float = COPY_CAP, stories: bool = False) -> dict[str, dict[int, list]]:
    """key -> slice -> [slice, n, k, sample ids (≤ `samples`), {ticker: [n, k]}(, {story: [copies, sources]})];
    duplicates of an id skipped; n and k story-weighted (whole numbers when no item has a story)."""
    seen: set[str] = set()
    by_key: dict[str, dict[int, list]] = {}
    shown: dict[tuple[str, int], set] = {}  # story ids sampled per cell
    for ts, eid, neg, topic, tickers, *rest in items:
        if eid in seen:
            continue
        seen.add(eid)
        own = rest[0] if rest and rest[0] else {}
        story = rest[1] if len(rest) > 1 else None
        weight = story_weight(story, copy_weight, copy_cap)
        sl = int(ts // slice_s)
        for key in aggregation_keys(topic, list(tickers)):
            is_topic = key.startswith("topic:")
            negative = neg if is_topic else own.get(key[7:], neg)
            cell = by_key.setdefault(key, {}).setdefault(sl, [sl, 0, 0, [], {}] + ([{}] if stories else []))
            cell[1] = add_counts(cell[1], weight)
            if is_topic:  # per ticker [items, negatives]: a topic's breadth test takes a member's whole traffic out
                for t in tickers:
                    nk = cell[4].setdefault(t, [0, 0])
                    nk[0] = add_counts(nk[0], weight)
                    nk[1] = add_counts(nk[1], weight if negative else 0)
            if negative:
                cell[2] = add_counts(cell[2], weight)
                _sample(cell, eid, story, samples, shown.setdefault((key, sl), set()), stories)
    for key, cells in by_key.items():  # a topic cell's tickers: the busiest SLICE_TICKERS (the detector keeps as
        if key.startswith("topic:"):   # many): a batch of spam naming 50 distinct cashtags an item made a count
            for cell in cells.values():  # record past Kafka's 1 MB record limit
                if len(cell[4]) > SLICE_TICKERS:
                    cell[4] = busiest(cell[4], SLICE_TICKERS)
    return by_key


def busiest(by_ticker: dict, keep: int) -> dict:
    """The `keep` tickers with the most items, then negatives, then by name (the same whatever the
    order equal counts arrived in). A value is [items, negatives], or a bare number of negatives
    (counts written before items were counted per ticker). What the tickers left out had is read
    at the topic's share, like an item of no member; the topic's own n and k count every item."""
    def order(kv):
        v = kv[1]
        n, k = (v, v) if isinstance(v, (int, float)) else (v[0], v[1])
        return -n, -k, kv[0]
    return dict(sorted(by_ticker.items(), key=order)[:keep])


def add_counts(a, b):
    """a + b for counts: whole numbers stay exact ints; story-weighted ones (multiples of a copy's
    weight) are rounded to 1e-9, so the worker's batches and an offline replay reach the same value
    whatever the order of the additions (0.1 + 0.2 != 0.3 in binary floating point). The detector
    adds with it too."""
    total = a + b
    return total if isinstance(total, int) else round(total, 9)


def _sample(cell: list, eid: str, story, samples: int, shown: set, stories: bool) -> None:
    """One sample id per story (its first negative in the cell); with `stories`, the story's
    negative copies and sources in the cell."""
    sid = story[0] if story else eid
    if stories:
        entry = cell[5].get(sid)
        if entry is None and len(cell[5]) < samples:
            entry = cell[5][sid] = [0, []]
        if entry is not None:
            entry[0] += 1
            source = eid.split("/", 1)[0]
            if source not in entry[1]:
                entry[1].append(source)
    if sid in shown:
        return
    shown.add(sid)
    if len(cell[3]) < samples:
        cell[3].append(eid)
