"""Webhook delivery, run inside every API process; safe with any number of them.

1. Fan-out: `queries.FANOUT` inserts one `delivery` row per (alert event, matching webhook
   subscription); the unique pair is the claim, so replicas never create two.
2. Claim: due rows are leased with `FOR UPDATE SKIP LOCKED` and `locked_until`, so one process
   sends each; a process that dies mid-send leaves a lease that expires, and the row is sent
   again (at least once; receivers deduplicate on X-Finsent-Delivery).
3. Send: signed POST to the checked address (api/webhooks.py), each delivery on its own task
   (at most CONCURRENCY at once) and within FINSENT_WEBHOOK_TIMEOUT_S in all, lookup included:
   a receiver that answers slowly, or dribbles its answer a byte at a time, holds one of those
   slots for that long and never the deliveries to other subscribers. Success resets the
   subscription's failure count; a failure schedules a retry with exponential backoff and
   jitter in `next_attempt_at` (so pending retries survive restarts), and after
   FINSENT_WEBHOOK_MAX_FAILURES consecutive failures the subscription is disabled with a reason.
Every attempt is written to `delivery_attempt` (the delivery log). A subscription deleted while
its delivery is in flight takes the delivery with it: the attempt is then not written. Nothing one
subscriber's URL or receiver does can stop the deliverer: an error is that delivery's failure.
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
CONCURRENCY = 50  # deliveries in flight per process (the HTTP client's connection limit)
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
        self._sending: set[asyncio.Task] = set()

    def start(self) -> None:
        self.http = webhooks.client(self.settings.webhook_timeout_s)
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                if len(self._sending) >= CONCURRENCY:
                    await asyncio.wait(set(self._sending), return_when=asyncio.FIRST_COMPLETED)
                if not await self.step():
                    await self._idle()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                log.warning("delivery.db_error", error=str(exc))
                await asyncio.sleep(IDLE_POLL_S)
            except Exception:  # never the end of every subscriber's deliveries
                log.exception("delivery.error")
                await asyncio.sleep(IDLE_POLL_S)

    async def step(self) -> int:
        """One round: fan out new alert events, lease due deliveries (as many as there are free
        sending slots) and start sending them; how many were leased. It does not wait for the sends."""
        self.hub.wake.clear()
        await self.pool.execute(q.FANOUT)
        free = min(BATCH, CONCURRENCY - len(self._sending))
        claimed = await self.pool.fetch(q.CLAIM, free, self.lease_s) if free > 0 else []
        for row in claimed:
            task = asyncio.create_task(self._deliver(row), name=f"webhook-delivery-{row['id']}")
            self._sending.add(task)
            task.add_done_callback(self._sent)
        return len(claimed)

    def _sent(self, task: asyncio.Task) -> None:
        self._sending.discard(task)
        self.hub.wake.set()  # a slot is free, and a failed send may be due again soon: look for work

    async def _deliver(self, row) -> None:
        """send(), whose errors end this delivery's attempt only (its lease expires: it is sent again)."""
        try:
            await self.send(row)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
            log.warning("delivery.db_error", delivery=row["id"], error=str(exc))
        except Exception:
            log.exception("delivery.error", delivery=row["id"])

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
        try:  # the whole attempt is bounded: httpx's timeouts bound each read, not a dribbled answer
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                target = await webhooks.resolve(row["target_url"], allow_http=self.settings.webhook_allow_http,
                                                allow_private=self.settings.webhook_allow_private)
                status = await webhooks.post(self.http, target, body, headers)
        except webhooks.UnsafeTarget as exc:
            error = f"refused target: {exc}"
        except TimeoutError:
            error = "timed out"
        except httpx.HTTPError as exc:
            error = transport_error(exc)
        except (ValueError, TypeError, httpx.InvalidURL) as exc:  # a stored URL or header the client refuses
            log.warning("webhook.unsendable", delivery=row["id"], error=str(exc))
            error = "request failed"
        ms = (time.perf_counter() - started) * 1000
        if status is not None and 200 <= status < 300:
            await self._delivered(row, status, ms)
        else:
            await self._failed(row, status, error or f"HTTP {status}", ms)

    async def _delivered(self, row, status: int, ms: float) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(q.LOCK_DELIVERY, row["id"], row["subscription_id"]) is None:
                return  # its subscription was deleted meanwhile, and the delivery with it
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
            if await conn.fetchval(q.LOCK_DELIVERY, row["id"], row["subscription_id"]) is None:
                return  # its subscription was deleted meanwhile, and the delivery with it
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
