"""Rollup rows kept in memory in epoch-aligned pieces, so that any series window (an outside
client's own start, end, bucket and keys) is assembled from pieces already read, and only the
pieces it lacks are read from Postgres, in one statement.

A piece is one key's rollup rows over a fixed, epoch-aligned span of `PIECE_ROWS[rollup]` rollup
buckets (an hour of minute rows, 6 hours of 5-minute rows, a week of hourly rows), held as a dense
float64 array of shape (5, rows): n, negatives, neutrals, positives, score_sum (the counts are
whole numbers well inside float64's exact range). A piece with no rows is held as `None`. Series
buckets are multiples of their rollup and epoch-aligned, so summing whole rollup rows is exact.

A piece is dropped when a rollup change at or before its end is heard (api/series_cache.py, the
same notifications as the answers), so a sliding window reuses yesterday's pieces and reads again
only the live tail that the worker is writing into. Pieces are read as packed bytes (one bytea
per key: decoding is one numpy view instead of six lists of Python numbers).

    pieces = Pieces(max_bytes=48 << 20)
    hit = pieces.get(("event_rollup_5m", "topic", "ipo", 6843))   # MISSING, None or (5, 72) array
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

# rollup seconds → rows per piece: the live piece (re-read after each write) stays small, and a
# long span stays a few hundred pieces (a year of hourly rows is 53 pieces per key)
PIECE_ROWS = {60: 60, 300: 72, 3600: 168}
FIELDS = 5  # n, negatives, neutrals, positives, score_sum
ENTRY_BYTES = 200  # the dict entry, its key and the index of one piece, roughly
MISSING = object()
# one row per key: its rollup rows as packed big-endian records (b = the row's index from $3, in
# steps of $4 seconds), NULL when it has none; decoded by numpy.frombuffer(ROW)
PACKED = """
SELECT k.key, r.rows
FROM unnest($2::text[]) AS k(key) CROSS JOIN LATERAL (
    SELECT string_agg(int4send(floor((date_part('epoch', {col}) - $3::float8) / $4::float8)::int4) || int4send(n)
                      || int4send(negatives) || int4send(neutrals) || int4send(positives) || float8send(score_sum),
                      ''::bytea) AS rows
    FROM {table} t WHERE t.key_type = $1 AND t.key = k.key AND t.{col} >= $5 AND t.{col} < $6) r
"""
ROW = np.dtype([("b", ">i4"), ("n", ">i4"), ("negatives", ">i4"), ("neutrals", ">i4"), ("positives", ">i4"),
                ("score_sum", ">f8")])


def dense(rows: bytes | None, length: int) -> np.ndarray:
    """Packed rollup rows (PACKED) → a (5, length) array, zero where there is no row."""
    out = np.zeros((FIELDS, length))
    if rows:
        r = np.frombuffer(rows, ROW)
        for i, name in enumerate(ROW.names[1:]):
            out[i, r["b"]] = r[name]
    return out


class Pieces:
    """An LRU of pieces under a byte budget, indexed by piece number so that a change drops the
    pieces at and after it without walking the rest."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, np.ndarray | None] = OrderedDict()  # (table, key_type, key, j) → piece
        self.index: dict[tuple[str, int], set[tuple]] = {}  # (table, j) → its entries' keys
        self.size = 0

    def get(self, pk: tuple):
        hit = self.entries.get(pk, MISSING)
        if hit is not MISSING:
            self.entries.move_to_end(pk)
        return hit

    def put(self, pk: tuple, piece: np.ndarray | None) -> None:
        if piece is not None and not piece.any():
            piece = None
        self.discard(pk)
        self.entries[pk] = piece
        self.index.setdefault((pk[0], pk[3]), set()).add(pk)
        self.size += ENTRY_BYTES + (piece.nbytes if piece is not None else 0)
        while self.size > self.max_bytes and self.entries:
            self.discard(next(iter(self.entries)))

    def discard(self, pk: tuple) -> None:
        old = self.entries.pop(pk, MISSING)
        if old is MISSING:
            return
        self.size -= ENTRY_BYTES + (old.nbytes if old is not None else 0)
        group = self.index.get((pk[0], pk[3]))
        if group is not None:
            group.discard(pk)
            if not group:
                del self.index[(pk[0], pk[3])]

    def changed(self, oldest: float, span_of: dict[str, int]) -> None:
        """Drop every piece whose end is after `oldest` (epoch s); `span_of`: table → piece seconds."""
        for table, j in [g for g in self.index if (g[1] + 1) * span_of[g[0]] > oldest]:
            for pk in list(self.index.get((table, j), ())):
                self.discard(pk)

    def clear(self) -> None:
        self.entries.clear()
        self.index.clear()
        self.size = 0
