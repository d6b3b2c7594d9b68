"""One counting function for the detector's input, shared by the worker (stream.pipeline,
from the rows a batch really inserted) and the offline replay (stream.offline): per aggregation
key and event-time slice, n items, k negative, a few sample ids of negatives, and per ticker
the negatives of a topic key. Each event id is counted once per call, however often it occurs
in the batch (a producer that sends an event twice, a replayed message in the same batch):
the rows themselves are stored once, so their counts must be too.

    count_cells([(ts, "wire/1", True, "M&A", ["ACME"])], slice_s=10)
    -> {"topic:M&A": {ts // 10: [slice, 1, 1, ["wire/1"], {"ACME": 1}]}, "ticker:ACME": {...}}

An item may carry a sixth element, {ticker: negative}: the entity's own sentiment, which its
ticker key counts instead of the item's (an item where Apple beats and Samsung slides is negative
for one key only). The ticker keys of an item are `ticker_keys(entities, min_relevance)`: the
entities at or above the relevance cut plus every cashtag and feed tag, the same in both paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stream.records import aggregation_keys

# (event time s, event id, negative, topic, tickers[, {ticker: negative}])
Item = tuple[float, str, bool, str, Sequence[str]] | tuple[float, str, bool, str, Sequence[str], Mapping[str, bool]]
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


def count_cells(items: Iterable[Item], slice_s: int, samples: int = 5) -> dict[str, dict[int, list]]:
    """key -> slice -> [slice, n, k, sample ids (≤ `samples`), {ticker: k}]; duplicates of an id skipped."""
    seen: set[str] = set()
    by_key: dict[str, dict[int, list]] = {}
    for ts, eid, neg, topic, tickers, *rest in items:
        if eid in seen:
            continue
        seen.add(eid)
        own = rest[0] if rest and rest[0] else {}
        sl = int(ts // slice_s)
        for key in aggregation_keys(topic, list(tickers)):
            is_topic = key.startswith("topic:")
            negative = neg if is_topic else own.get(key[7:], neg)
            cell = by_key.setdefault(key, {}).setdefault(sl, [sl, 0, 0, [], {}])
            cell[1] += 1
            if negative:
                cell[2] += 1
                if len(cell[3]) < samples:
                    cell[3].append(eid)
                if is_topic:
                    for t in tickers:
                        cell[4][t] = cell[4].get(t, 0) + 1
    return by_key
