"""Webhook delivery, run inside every API process; safe with any number of them.

1. Fan-out: `queries.FANOUT` inserts one `delivery` row per (alert event, matching webhook
   subscription); the unique pair is the claim, so replicas never create two.
2. Claim: due rows are leased with `FOR UPDATE SKIP LOCKED` and `locked_until`, so one process
   sends each; a process that dies mid-send leaves a lease that expires, and the row is sent
   again (at least once; receivers deduplicate on X-Finsent-Delivery).
3. Send: signed POST to the checked address (api/webhooks.py). Success resets the
   subscription's failure count; a failure schedules a retry with exponential backoff and
   jitter in `next_attempt_at` (so pending retries survive restarts), and after
   FINSENT_WEBHOOK_MAX_FAILURES consecutive failures the subscription is disabled with a reason.
Every attempt is written to `delivery_attempt` (the delivery log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time

import asyncpg
import httpx

from api import queries as q
from api import webhooks
from api.crud import alert_payload
from api.live import AlertHub
from api.metrics import WEBHOOKS
from core.logs import get
from core.settings import Settings

BATCH = 20
IDLE_POLL_S = 1.0  # look for due retries at least this often
log = get("api.delivery")


def transport_error(exc: httpx.HTTPError) -> str:
    """What the delivery log says of a failed request: the kind of failure, never an exception
    class name or the address connected to."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return "connection failed" if isinstance(exc, httpx.TransportError) else "request failed"


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential with 'equal jitter': half fixed, half random, so replicas do not retry in step."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, hub: AlertHub):
        self.pool, self.settings, self.hub = pool, settings, hub
        self.lease_s = 2 * settings.webhook_timeout_s + 10
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.http = webhooks.client(self.settings.webhook_timeout_s)
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                if not await self.step():
                    await self._idle()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                log.warning("delivery.db_error", error=str(exc))
                await asyncio.sleep(IDLE_POLL_S)

    async def step(self) -> int:
        """One round: fan out new alert events, lease due deliveries, send them concurrently."""
        self.hub.wake.clear()
        await self.pool.execute(q.FANOUT)
        claimed = await self.pool.fetch(q.CLAIM, BATCH, self.lease_s)
        await asyncio.gather(*(self.send(row) for row in claimed))
        return len(claimed)

    async def _idle(self) -> None:
        due = await self.pool.fetchval(q.SECONDS_TO_NEXT_DUE)
        wait = IDLE_POLL_S if due is None else min(IDLE_POLL_S, max(float(due), 0.01))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.hub.wake.wait(), wait)

    async def send(self, row) -> None:
        body = json.dumps({"id": row["alert_event_id"], "event": row["event"], "delivery_id": row["id"],
                           "subscription_id": row["subscription_id"], "alert": alert_payload(row["payload"])},
                          separators=(",", ":")).encode()
        headers = {**webhooks.sign(row["secret"], body), "X-Finsent-Delivery": str(row["id"]),
                   "X-Finsent-Event": row["event"]}
        started, status, error = time.perf_counter(), None, None
        try:
            target = await webhooks.resolve(row["target_url"], allow_http=self.settings.webhook_allow_http,
                                            allow_private=self.settings.webhook_allow_private)
            status = await webhooks.post(self.http, target, body, headers)
        except webhooks.UnsafeTarget as exc:
            error = f"refused target: {exc}"
        except httpx.HTTPError as exc:
            error = transport_error(exc)
        ms = (time.perf_counter() - started) * 1000
        if status is not None and 200 <= status < 300:
            await self._delivered(row, status, ms)
        else:
            await self._failed(row, status, error or f"HTTP {status}", ms)

    async def _delivered(self, row, status: int, ms: float) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.MARK_DELIVERED, row["id"], status)
            await conn.execute(q.RESET_FAILURES, row["subscription_id"])
            await conn.execute(q.LOG_ATTEMPT, row["id"], row["subscription_id"], row["attempts"], "delivered",
                               status, None, ms)
        WEBHOOKS.labels("delivered").inc()
        log.info("webhook.delivered", delivery=row["id"], subscription=row["subscription_id"], status=status)

    async def _failed(self, row, status: int | None, error: str, ms: float) -> None:
        s = self.settings
        reason = f"{s.webhook_max_failures} consecutive delivery failures; last: {error}"
        async with self.pool.acquire() as conn, conn.transaction():
            enabled = await conn.fetchval(q.COUNT_FAILURE, row["subscription_id"], s.webhook_max_failures, reason)
            if enabled:
                outcome = "retry"
                await conn.execute(q.RETRY_LATER, row["id"],
                                   backoff(row["attempts"], s.webhook_retry_base_s, s.webhook_retry_max_s), status, error)
            else:
                outcome = "disabled"
                await conn.execute(q.FAIL_PENDING, row["subscription_id"], status, error)
            await conn.execute(q.LOG_ATTEMPT, row["id"], row["subscription_id"], row["attempts"], outcome, status,
                               error, ms)
        WEBHOOKS.labels("failed").inc()
        WEBHOOKS.labels(outcome).inc()
        log.warning("webhook.failed", delivery=row["id"], subscription=row["subscription_id"], error=error,
                    outcome=outcome)
