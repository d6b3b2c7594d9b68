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
    body = await cache.get(key, end_epoch_s, compute)   # compute(conn) -> bytes, on its own pooled connection

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

import asyncpg

from api.metrics import SERIES_CACHE, SERIES_CACHE_BYTES, SERIES_CACHE_LISTENING
from core.logs import get

CHANNEL = "finsent_rollup"
log = get("api.series_cache")


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
        self.size = 0
        self.flights: dict[tuple, Flight] = {}
        self.epoch = 0  # moves whenever notifications may have been missed
        self.listening = False
        self._task: asyncio.Task | None = None
        self.settle_s = settle_s  # None: reads see every committed change (the primary)
        self.recent: deque[tuple[float, float]] = deque(maxlen=10_000)  # (monotonic time, oldest) of changes

    def start(self) -> None:
        if self.max_bytes > 0:
            self._task = asyncio.create_task(self._run(), name="series-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for flight in list(self.flights.values()):
            flight.task.cancel()

    async def get(self, key: tuple, end: float, compute: Callable[[asyncpg.Connection], Awaitable[bytes]]) -> bytes:
        """The answer for `key` (a series spanning up to `end`, epoch seconds): cached, shared with
        an identical request in flight, or computed on a pooled connection of its own."""
        if not self.listening:
            SERIES_CACHE.labels("off").inc()
            return await self._compute(compute)
        hit = self.entries.get(key)
        if hit is not None:
            self.entries.move_to_end(key)
            SERIES_CACHE.labels("hit").inc()
            return hit[1]
        flight = self.flights.get(key)
        if flight is None:
            # its own task: a requester that disconnects does not cancel the others' answer
            flight = Flight(end, self.epoch, asyncio.create_task(self._compute(compute)))
            self.flights[key] = flight
            flight.task.add_done_callback(lambda t, k=key, f=flight: self._landed(k, f))
            SERIES_CACHE.labels("miss").inc()
        else:
            SERIES_CACHE.labels("shared").inc()
        return await asyncio.shield(flight.task)

    async def _compute(self, compute) -> bytes:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
            return await compute(conn)

    def _landed(self, key: tuple, flight: Flight) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]
        if flight.task.cancelled() or flight.task.exception() is not None:
            return
        if flight.stale or flight.epoch != self.epoch or not self.listening or self._maybe_behind(flight):
            return
        self._store(key, flight.end, flight.task.result())

    def _store(self, key: tuple, end: float, body: bytes) -> None:
        if len(body) > self.max_bytes // 8:  # one huge answer must not flush everything else
            return
        self._drop(key)
        self.entries[key] = (end, body)
        self.size += len(body)
        while self.size > self.max_bytes or len(self.entries) > self.max_entries:
            self._drop(next(iter(self.entries)))
        SERIES_CACHE_BYTES.set(self.size)

    def _maybe_behind(self, flight: Flight) -> bool:
        """A replica read that may predate a change it covers (see the module docstring)."""
        if self.settle_s is None:
            return False
        settle = self.settle_s()
        if settle is None or len(self.recent) == self.recent.maxlen:  # unknown lag, or changes forgotten
            return True
        since = flight.started - settle
        return any(t >= since and oldest < flight.end for t, oldest in self.recent)

    def _drop(self, key: tuple) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= len(old[1])

    def changed(self, oldest: float) -> None:
        """Rollup rows at or after `oldest` (epoch s) changed and are committed."""
        if self.settle_s is not None:
            now = time.monotonic()
            while self.recent and self.recent[0][0] < now - 120:  # past any settle time kept (api/replica.py)
                self.recent.popleft()
            self.recent.append((now, oldest))
        for key in [k for k, (end, _) in self.entries.items() if end > oldest]:
            self._drop(key)
        for flight in self.flights.values():
            if flight.end > oldest:
                flight.stale = True
        SERIES_CACHE_BYTES.set(self.size)

    def _reset(self, listening: bool) -> None:
        self.listening = listening
        self.epoch += 1
        self.entries.clear()
        self.size = 0
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
