"""Postgres writes of the worker (asyncpg). Every write is idempotent and retried with
exponential backoff while Postgres is unreachable, so the caller can hold its offsets until
the write returns: nothing is lost and the worker resumes by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import asyncpg

from core import logs
from stream import metrics
from stream.detector import Decision

log = logs.get("finsent.sink")

RETRYABLE = (OSError, ConnectionError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
             asyncpg.InterfaceError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
             asyncpg.AdminShutdownError)

INSERT_EVENT = """
INSERT INTO scored_event (source, id, published_at, text, title, url, lang, tickers, ingested_at, scored_at,
    topic, topic_confidence, sentiment, p_negative, p_neutral, p_positive, score, model_version, truncated)
VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)
ON CONFLICT DO NOTHING
"""
INSERT_ALERT = """
INSERT INTO alert (key_type, key, window_start, window_end, n, negatives, baseline_rate, baseline_n, z, p_value,
    severity, sample_event_ids, state)
VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,'open')
ON CONFLICT ON CONSTRAINT uq_alert_key_window DO NOTHING
"""
RESOLVE_ALERT = """
UPDATE alert SET state = 'resolved', resolved_at = now()
WHERE key_type = $1 AND key = $2 AND state = 'open'
"""


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class PostgresSink:
    def __init__(self, dsn: str, max_backoff_s: float = 5.0, pool_size: int = 4):
        self.dsn, self.max_backoff_s, self.pool_size = dsn, max_backoff_s, pool_size
        self.pool: asyncpg.Pool | None = None
        self.up, self.last_error = True, ""

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def _connect(self) -> asyncpg.Pool:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size, timeout=5)
        return self.pool

    async def retrying(self, what: str, op: Callable[[asyncpg.Connection], Awaitable]):
        """Run `op` in a transaction until it succeeds; back off while Postgres is unreachable."""
        delay, t0 = 0.2, time.perf_counter()
        while True:
            try:
                pool = await self._connect()
                async with pool.acquire() as conn, conn.transaction():
                    result = await op(conn)
                metrics.DB_UP.set(1)
                self.up = True
                metrics.WRITE_LATENCY.observe(time.perf_counter() - t0)
                return result
            except RETRYABLE as exc:
                metrics.DB_UP.set(0)
                self.up, self.last_error = False, repr(exc)[:200]
                metrics.DB_RETRIES.inc()
                log.warning("postgres unavailable; retrying", what=what, error=repr(exc)[:200], retry_in_s=delay)
                await self._reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    async def _reset(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.terminate()

    async def write_events(self, rows: list[tuple]) -> None:
        if rows:
            await self.retrying("scored_event", lambda c: c.executemany(INSERT_EVENT, rows))

    async def write_decision(self, d: Decision) -> None:
        key_type, key = d.key.split(":", 1)
        if d.action == "open":
            args = (key_type, key, ts(d.window_start), ts(d.window_end), d.n, d.negatives, d.baseline_rate,
                    d.baseline_n, d.z, d.p_value, d.severity, list(d.sample_event_ids))
            await self.retrying("alert", lambda c: c.execute(INSERT_ALERT, *args))
        else:
            await self.retrying("alert", lambda c: c.execute(RESOLVE_ALERT, key_type, key))
