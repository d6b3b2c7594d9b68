"""One counting function for the detector's input, shared by the worker (stream.pipeline,
from the rows a batch really inserted) and the offline replay (stream.offline): per aggregation
key and event-time slice, n items, k negative, a few sample ids of negatives, and per ticker
the negatives of a topic key. Each event id is counted once per call, however often it occurs
in the batch (a producer that sends an event twice, a replayed message in the same batch):
the rows themselves are stored once, so their counts must be too.

    count_cells([(ts, "wire/1", True, "M&A", ["ACME"])], slice_s=10)
    -> {"topic:M&A": {ts // 10: [slice, 1, 1, ["wire/1"], {"ACME": 1}]}, "ticker:ACME": {...}}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from stream.records import aggregation_keys

Item = tuple[float, str, bool, str, Sequence[str]]  # (event time s, event id, negative, topic, tickers)


def count_cells(items: Iterable[Item], slice_s: int, samples: int = 5) -> dict[str, dict[int, list]]:
    """key -> slice -> [slice, n, k, sample ids (≤ `samples`), {ticker: k}]; duplicates of an id skipped."""
    seen: set[str] = set()
    by_key: dict[str, dict[int, list]] = {}
    for ts, eid, neg, topic, tickers in items:
        if eid in seen:
            continue
        seen.add(eid)
        sl = int(ts // slice_s)
        for key in aggregation_keys(topic, list(tickers)):
            cell = by_key.setdefault(key, {}).setdefault(sl, [sl, 0, 0, [], {}])
            cell[1] += 1
            if neg:
                cell[2] += 1
                if len(cell[3]) < samples:
                    cell[3].append(eid)
                if key.startswith("topic:"):
                    for t in tickers:
                        cell[4][t] = cell[4].get(t, 0) + 1
    return by_key
