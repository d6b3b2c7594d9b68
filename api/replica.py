"""The read replica's lag (FINSENT_API_READ_URL): sampled every few seconds on a pooled replica
connection with a bounded wait, exported as `finsent_api_replica_lag_seconds` (absent when no
replica is configured or the last sample failed; `finsent_api_replica_up` says which) and used by
the series cache to decide how long after a rollup change a replica's answer may still be old.

    lag = ReplicaLag(read_pool); lag.start(); lag.seconds   # None until a sample succeeded
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from api import queries as q
from api.metrics import REPLICA_LAG, REPLICA_UP
from core.logs import get

log = get("api.replica")
MAX_SETTLE_S = 60.0  # a replica further behind than this: its series answers are not cached at all


class ReplicaLag:
    def __init__(self, pool: asyncpg.Pool, *, every_s: float = 5.0, timeout_s: float = 2.0):
        self.pool, self.every_s, self.timeout_s = pool, every_s, timeout_s
        self.seconds: float | None = None
        self.sampled_at = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replica-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        REPLICA_LAG.clear()
        REPLICA_UP.clear()

    async def sample(self) -> float | None:
        """One bounded sample: the replica's seconds behind the primary (0 while it has replayed
        everything it received), None when it cannot be asked."""
        try:
            async with self.pool.acquire(timeout=self.timeout_s) as conn:
                lag = await conn.fetchval(q.REPLICA_LAG, timeout=self.timeout_s)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if self.seconds is not None or not self.sampled_at:
                log.warning("api.replica_unreachable", error=str(exc) or type(exc).__name__)
            lag = None
        self._record(None if lag is None else max(0.0, float(lag)))
        return self.seconds

    def _record(self, lag: float | None) -> None:
        self.seconds, self.sampled_at = lag, time.monotonic()
        REPLICA_UP.labels("read").set(0 if lag is None else 1)
        if lag is None:
            REPLICA_LAG.clear()  # absent rather than a stale or NaN value
        else:
            REPLICA_LAG.labels("read").set(lag)

    def settle_s(self) -> float | None:
        """How long after a rollup change a replica read may still miss it: the last lag plus the
        sampling period; None (do not trust the replica's answer for caching) when unknown or
        past MAX_SETTLE_S."""
        if self.seconds is None:
            return None
        settle = self.seconds + self.every_s
        return settle if settle <= MAX_SETTLE_S else None

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.every_s)
