"""Series answers (GET /v1/series) kept in memory and dropped the moment the data under them
changes, so a cached answer is never older than what the database holds.

Every statement that changes a rollup table NOTIFYs `finsent_rollup` with the oldest bucket it
changed (migration 0006), delivered at commit. One LISTEN connection per API process receives
them; an answer whose span reaches past that time is dropped, and one being computed is not
kept (its requesters still get it: it was right as of its snapshot). While the LISTEN connection
is down nothing is cached or served from the cache (every request reads the database), and the
cache starts empty when it is back. Identical requests that arrive together share one database
read (single flight), so a burst of one dashboard's panels costs one query.

    cache = SeriesCache(pool, dsn, max_bytes=64 << 20); cache.start()
    body = await cache.get(key, end_epoch_s, compute)   # compute() -> bytes
    rows = await cache.rollup_rows(Rollup(300, "event_rollup_5m", "bucket"), "topic", keys, start_s, end_s)

Below the answers, the rollup rows themselves are kept in epoch-aligned pieces (api/series_pieces.py:
three quarters of max_bytes), so that a request no one made before (its own window, bucket or keys)
is assembled from pieces already read plus the ones it lacks, read in one statement on a pooled
connection; concurrent requests needing the same missing piece share its read. A piece read while
a change at or before its end was heard is used for that answer but not kept. An answer whose span
changed while it was being assembled from pieces of different reads is read again in one statement
(one snapshot), so that it does not count a batch in one piece and miss it in another (as far as
the notifications have arrived: they come a moment after the commit, as for the answers).

With a read replica (FINSENT_API_READ_URL) answers are read on the replica while the changes are
heard on the primary, so a read that starts just after a notification may not see that change
yet. `settle_s()` (api/replica.py: the replica's last sampled lag plus the sampling period; None
when unknown) bounds that: an answer is not kept when a change it covers was notified within
`settle_s` before its read began, and nothing is kept while the lag is unknown.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import asyncpg
import numpy as np

from api.metrics import SERIES_CACHE, SERIES_CACHE_BYTES, SERIES_CACHE_LISTENING, SERIES_PIECES
from api.series_pieces import FIELDS, MISSING, PACKED, PIECE_ROWS, Pieces, dense
from core.logs import get

CHANNEL = "finsent_rollup"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
log = get("api.series_cache")


@dataclass(frozen=True)
class Rollup:
    seconds: int  # one rollup row's span
    table: str
    col: str  # its time column

    @property
    def piece_s(self) -> int:
        return PIECE_ROWS[self.seconds] * self.seconds


@dataclass
class Fill:
    """One read of missing pieces: a rectangle of keys × pieces, in its own task."""

    task: asyncio.Task
    epoch: int
    seq: int  # the last change heard when it started
    started: float = field(default_factory=time.monotonic)


@dataclass
class Flight:
    end: float
    epoch: int
    task: asyncio.Task
    stale: bool = field(default=False)
    started: float = field(default_factory=time.monotonic)


class SeriesCache:
    def __init__(self, pool: asyncpg.Pool, dsn: str, *, max_bytes: int = 64 << 20, max_entries: int = 4096,
                 acquire_timeout_s: float = 5.0, settle_s: Callable[[], float | None] | None = None):
        self.pool, self.dsn = pool, dsn
        self.max_bytes, self.max_entries, self.acquire_timeout_s = max_bytes, max_entries, acquire_timeout_s
        self.entries: OrderedDict[tuple, tuple[float, bytes]] = OrderedDict()  # key → (span end, body)
        self.pieces = Pieces(max_bytes - max_bytes // 4)
        self.answer_bytes = max_bytes // 4
        self.piece_s: dict[str, int] = {}  # table → seconds of one piece (the rollups read so far)
        self.fills: dict[tuple, Fill] = {}  # piece key → the read that brings it
        self.seq = 0  # changes heard
        self.size = 0
        self.flights: dict[tuple, Flight] = {}
        self.epoch = 0  # moves whenever notifications may have been missed
        self.listening = False
        self._task: asyncio.Task | None = None
        self.settle_s = settle_s  # None: reads see every committed change (the primary)
        self.recent: deque[tuple[float, int, float]] = deque(maxlen=10_000)  # (monotonic time, seq, oldest)

    def start(self) -> None:
        if self.max_bytes > 0:
            self._task = asyncio.create_task(self._run(), name="series-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for flight in list(self.flights.values()):
            flight.task.cancel()
        for fill in list(self.fills.values()):
            fill.task.cancel()

    async def get(self, key: tuple, end: float, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """The answer for `key` (a series spanning up to `end`, epoch seconds): cached, shared with
        an identical request in flight, or computed (in a task of its own)."""
        if not self.listening:
            SERIES_CACHE.labels("off").inc()
            return await compute()
        hit = self.entries.get(key)
        if hit is not None:
            self.entries.move_to_end(key)
            SERIES_CACHE.labels("hit").inc()
            return hit[1]
        flight = self.flights.get(key)
        if flight is None:
            # its own task: a requester that disconnects does not cancel the others' answer
            flight = Flight(end, self.epoch, asyncio.create_task(compute()))
            self.flights[key] = flight
            flight.task.add_done_callback(lambda t, k=key, f=flight: self._landed(k, f))
            SERIES_CACHE.labels("miss").inc()
        else:
            SERIES_CACHE.labels("shared").inc()
        return await asyncio.shield(flight.task)

    async def rollup_rows(self, rollup: Rollup, key_type: str, keys: list[str], start: float, end: float) -> np.ndarray:
        """The rollup rows of `keys` over [start, end) (epoch s, multiples of rollup.seconds) as a
        dense (5, len(keys), rows) array: n, negatives, neutrals, positives, score_sum."""
        if not self.listening:  # nothing kept: read just the span
            return await self._read(rollup, key_type, keys, start, end)
        self.piece_s[rollup.table] = rollup.piece_s
        j0, j1 = int(start // rollup.piece_s), -int(-end // rollup.piece_s)
        seq = self.seq
        out, mixed = await self._assemble(rollup, key_type, keys, j0, j1)
        if mixed and self._heard_since(seq, end):  # pieces of different reads around a change: one snapshot
            return await self._read(rollup, key_type, keys, start, end)
        first = int(start - j0 * rollup.piece_s) // rollup.seconds
        out = out.reshape(FIELDS, len(keys), (j1 - j0) * PIECE_ROWS[rollup.seconds])
        return out[:, :, first:first + int(end - start) // rollup.seconds]

    async def _assemble(self, rollup: Rollup, key_type: str, keys: list[str], j0: int, j1: int):
        """(array (5, keys, pieces, rows), whether it came from more than one read)."""
        rows, count = PIECE_ROWS[rollup.seconds], j1 - j0
        zero = np.zeros((FIELDS, rows))
        parts: list[np.ndarray] = []  # key by key, piece by piece
        lacking: list[tuple[int, tuple]] = []
        for key in keys:
            for j in range(j0, j1):
                pk = (rollup.table, key_type, key, j)
                piece = self.pieces.get(pk)
                if piece is MISSING:
                    lacking.append((len(parts), pk))
                parts.append(zero if piece is None or piece is MISSING else piece)
        SERIES_PIECES.labels("hit").inc(len(parts) - len(lacking))
        fills: dict[int, Fill] = {}
        if lacking:
            mine = [pk for _, pk in lacking if pk not in self.fills]
            SERIES_PIECES.labels("miss").inc(len(mine))
            SERIES_PIECES.labels("shared").inc(len(lacking) - len(mine))
            if mine:
                self._start_fill(rollup, key_type, mine)
            fills = {id(f): f for f in (self.fills.get(pk) for _, pk in lacking) if f is not None}
            got: dict[tuple, np.ndarray | None] = {}
            for fill in fills.values():
                got.update(await asyncio.shield(fill.task))
            for i, pk in lacking:
                piece = got.get(pk, MISSING)
                if piece is MISSING:  # not brought by any read (cannot happen): read them all in one
                    return await self._read_pieces(rollup, key_type, keys, j0, j1), False
                parts[i] = zero if piece is None else piece
        # one C call (np.stack checks every part in Python): (5, keys × pieces × rows), no copy after
        out = np.concatenate(parts, axis=1).reshape(FIELDS, len(keys), count, rows)
        return out, len(fills) > 1 or (0 < len(lacking) < len(parts))

    def _start_fill(self, rollup: Rollup, key_type: str, mine: list[tuple]) -> None:
        keys = sorted({pk[2] for pk in mine})
        j0, j1 = min(pk[3] for pk in mine), max(pk[3] for pk in mine) + 1
        fill = Fill(asyncio.create_task(self._fill(rollup, key_type, keys, j0, j1)), self.epoch, self.seq)
        for pk in mine:
            self.fills[pk] = fill
        fill.task.add_done_callback(lambda _t, f=fill, r=rollup: self._filled(r, f, mine))

    async def _fill(self, rollup: Rollup, key_type: str, keys: list[str], j0: int, j1: int) -> dict:
        data = await self._read_pieces(rollup, key_type, keys, j0, j1)
        return {(rollup.table, key_type, key, j): data[:, ki, j - j0].copy()
                for ki, key in enumerate(keys) for j in range(j0, j1)}

    def _filled(self, rollup: Rollup, fill: Fill, mine: list[tuple]) -> None:
        for pk in mine:
            if self.fills.get(pk) is fill:
                del self.fills[pk]
        if fill.task.cancelled() or fill.task.exception() is not None:
            return
        keep_until = self._kept_until(fill)
        for pk, piece in fill.task.result().items():
            if (pk[3] + 1) * rollup.piece_s <= keep_until:
                self.pieces.put(pk, piece)
        SERIES_CACHE_BYTES.set(self.size + self.pieces.size)

    def _kept_until(self, fill: Fill) -> float:
        """Pieces of this read ending at or before this time (epoch s) may be kept: before the
        oldest change heard since it started (or, on a replica, within the settle time before)."""
        if fill.epoch != self.epoch or not self.listening:
            return float("-inf")
        settle = 0.0
        if self.settle_s is not None:
            settle = self.settle_s()
            if settle is None:
                return float("-inf")
        if self._forgot(fill.seq):
            return float("-inf")
        since, until = fill.started - settle, float("inf")
        for t, s, oldest in reversed(self.recent):  # newest first; both orders hold along the deque
            if s <= fill.seq and t < since:
                break
            until = min(until, oldest)
        return until

    def _forgot(self, seq: int) -> bool:
        return len(self.recent) == self.recent.maxlen and self.recent[0][1] > seq + 1

    def _heard_since(self, seq: int, end: float) -> bool:
        """A change before `end` was heard after change number `seq`."""
        if self._forgot(seq):
            return True
        for _, s, oldest in reversed(self.recent):
            if s <= seq:
                return False
            if oldest < end:
                return True
        return False

    async def _read_pieces(self, rollup: Rollup, key_type: str, keys: list[str], j0: int, j1: int) -> np.ndarray:
        """Pieces j0..j1 of `keys`, read in one statement: (5, keys, pieces, rows)."""
        out = await self._read(rollup, key_type, keys, j0 * rollup.piece_s, j1 * rollup.piece_s)
        return out.reshape(FIELDS, len(keys), j1 - j0, PIECE_ROWS[rollup.seconds])

    async def _read(self, rollup: Rollup, key_type: str, keys: list[str], start: float, end: float) -> np.ndarray:
        """The rollup rows of `keys` over [start, end) in one statement: (5, keys, rows)."""
        sql = PACKED.format(table=rollup.table, col=rollup.col)
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
            got = await conn.fetch(sql, key_type, keys, float(start), float(rollup.seconds),
                                   EPOCH + timedelta(seconds=start), EPOCH + timedelta(seconds=end))
        packed = {r["key"]: r["rows"] for r in got}
        return np.stack([dense(packed.get(key), int(end - start) // rollup.seconds) for key in keys], axis=1)

    def _landed(self, key: tuple, flight: Flight) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]
        if flight.task.cancelled() or flight.task.exception() is not None:
            return
        if flight.stale or flight.epoch != self.epoch or not self.listening or self._maybe_behind(flight):
            return
        self._store(key, flight.end, flight.task.result())

    def _store(self, key: tuple, end: float, body: bytes) -> None:
        if len(body) > self.answer_bytes // 8:  # one huge answer must not flush everything else
            return
        self._drop(key)
        self.entries[key] = (end, body)
        self.size += len(body)
        while self.size > self.answer_bytes or len(self.entries) > self.max_entries:
            self._drop(next(iter(self.entries)))
        SERIES_CACHE_BYTES.set(self.size + self.pieces.size)

    def _maybe_behind(self, flight: Flight) -> bool:
        """A replica read that may predate a change it covers (see the module docstring)."""
        if self.settle_s is None:
            return False
        settle = self.settle_s()
        if settle is None or len(self.recent) == self.recent.maxlen:  # unknown lag, or changes forgotten
            return True
        since = flight.started - settle
        return any(t >= since and oldest < flight.end for t, _, oldest in self.recent)

    def _drop(self, key: tuple) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= len(old[1])

    def changed(self, oldest: float) -> None:
        """Rollup rows at or after `oldest` (epoch s) changed and are committed."""
        now = time.monotonic()
        while self.recent and self.recent[0][0] < now - 120:  # past any settle time kept, and any read's life
            self.recent.popleft()
        self.seq += 1
        self.recent.append((now, self.seq, oldest))
        for key in [k for k, (end, _) in self.entries.items() if end > oldest]:
            self._drop(key)
        for flight in self.flights.values():
            if flight.end > oldest:
                flight.stale = True
        self.pieces.changed(oldest, self.piece_s)
        SERIES_CACHE_BYTES.set(self.size + self.pieces.size)

    def _reset(self, listening: bool) -> None:
        self.listening = listening
        self.epoch += 1
        self.entries.clear()
        self.size = 0
        self.pieces.clear()
        SERIES_CACHE_BYTES.set(0)
        SERIES_CACHE_LISTENING.set(int(listening))

    def _notified(self, payload: str) -> None:
        try:
            self.changed(float(payload))
        except ValueError:  # not ours to read: forget everything rather than guess
            self._reset(self.listening)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                log.warning("series_cache.listen_lost", error=str(exc), retry_s=delay)
            finally:
                self._reset(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10, server_settings={"application_name": "finsent-api-cache"})
        try:
            await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: self._notified(payload))
            self._reset(True)  # what changed while not listening is unknown: start empty
            log.info("series_cache.listening")
            while True:
                await asyncio.sleep(5.0)
                await conn.fetchval("SELECT 1", timeout=5)  # notices a dead connection
        finally:
            conn.terminate()  # a listen-only connection: nothing to finish
