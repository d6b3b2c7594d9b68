"""The API learns of alerts from Postgres: the worker's INSERT into `alert_event` NOTIFYs
`finsent_alert_event` with the row id. One LISTEN connection per API process (the hub) fetches
each notified row once and hands it to the open live streams, and wakes the webhook deliverer.

Why LISTEN/NOTIFY over a Kafka consumer: the alert_event id is a total order every replica
shares, so a stream resumes exactly from `Last-Event-ID` with one indexed query, across API
restarts and replicas; no consumer group to manage, no offsets; and a notification arrives at
commit, so the API never sees an alert the database does not hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from api import queries as q
from api.crud import alert_payload
from core.logs import get

CHANNEL = "finsent_alert_event"
REVOKED = object()  # put in a stream's queue when its API key is revoked or deleted
QUEUE_SIZE = 1000  # a client this far behind is dropped; it resumes with Last-Event-ID
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
log = get("api.live")


@dataclass(frozen=True)
class AlertFilter:
    key_types: tuple[str, ...] = ("topic", "ticker")
    topics: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    min_severity: str = "low"
    min_relevance: float | None = None  # ticker alerts: evidence about the company this much (queries._RELEVANT)

    def matches(self, row) -> bool:
        """Mirrors the SQL match used for webhooks (queries._MATCH)."""
        kt, key = row["key_type"], row["key"]
        return (kt in self.key_types and SEVERITY_RANK.get(row["severity"], 0) >= SEVERITY_RANK[self.min_severity]
                and not (kt == "topic" and self.topics and key not in self.topics)
                and not (kt == "ticker" and self.tickers and key not in self.tickers))


class KeyRevoked(Exception):
    """The stream's API key was revoked: the stream ends."""


def message(row) -> dict:
    return {"id": row["id"], "event": row["event"], "alert": alert_payload(row["payload"])}


class AlertHub:
    """Also ends the streams of revoked keys: every `revoke_check_s` one query asks which of
    the open streams' keys are still valid."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, revoke_check_s: float = 2.0):
        self.pool, self.dsn, self.revoke_check_s = pool, dsn, revoke_check_s
        self.queues: dict[asyncio.Queue, int | None] = {}  # open stream → its API key id
        self.wake = asyncio.Event()  # set on every alert event: the deliverer looks for work
        self.listening = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="alert-hub"),
                       asyncio.create_task(self._watch_keys(), name="alert-hub-keys")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def subscribe(self, key_id: int | None = None) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.queues[queue] = key_id
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.queues.pop(queue, None)

    def end(self, queue: asyncio.Queue, why) -> None:
        """Last item of a stream: None (too slow: it resumes by id) or REVOKED."""
        self.queues.pop(queue, None)
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(why)

    def publish(self, row) -> None:
        for queue in list(self.queues):
            try:
                queue.put_nowait(row)
            except asyncio.QueueFull:
                self.end(queue, None)
        self.wake.set()

    async def _watch_keys(self) -> None:
        while True:
            await asyncio.sleep(self.revoke_check_s)
            ids = {k for k in self.queues.values() if k is not None}
            if not ids:
                continue
            try:
                valid = {r["id"] for r in await self.pool.fetch(q.VALID_API_KEYS, list(ids), timeout=5)}
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                log.warning("keys.check_failed", error=str(exc))
                continue
            for queue, key_id in list(self.queues.items()):
                if key_id is not None and key_id not in valid:
                    self.end(queue, REVOKED)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                log.warning("listen.lost", error=str(exc), retry_s=delay)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _listen(self) -> None:
        ids: asyncio.Queue[int] = asyncio.Queue()
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: ids.put_nowait(int(payload)))
            self.listening.set()
            self.wake.set()  # events may have arrived while not listening: let the deliverer look
            while True:
                try:
                    batch = [await asyncio.wait_for(ids.get(), timeout=5.0)]
                except asyncio.TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=5)  # notices a dead connection
                    continue
                while not ids.empty():
                    batch.append(ids.get_nowait())
                for row in await self.pool.fetch(q.ALERT_EVENTS_BY_ID, batch):
                    self.publish(row)
        finally:
            await conn.close()


async def relevant(pool: asyncpg.Pool, flt: AlertFilter, row) -> bool:
    """The stream side of a subscription's min_relevance (the webhook side is in queries._MATCH)."""
    if flt.min_relevance is None or row["key_type"] != "ticker":
        return True
    return bool(await pool.fetchval(q.ALERT_RELEVANT, row["alert_id"], row["key"], flt.min_relevance))


async def alert_feed(hub: AlertHub, pool: asyncpg.Pool, flt: AlertFilter, last_id: int | None,
                     keepalive_s: float, key_id: int | None = None) -> AsyncIterator[dict | None]:
    """Matching alert changes: those after `last_id` from the table, then live ones; None
    every `keepalive_s` of silence; KeyRevoked once `key_id` is revoked. Subscribing before the
    catch-up query means nothing is missed between the two; ids already sent are skipped."""
    queue = hub.subscribe(key_id)
    try:
        sent: set[int] = set()
        while last_id is not None:
            rows = await pool.fetch(q.ALERT_EVENTS_AFTER, last_id, 500)
            for row in rows:
                sent.add(row["id"])
                if flt.matches(row) and await relevant(pool, flt, row):
                    yield message(row)
            last_id = rows[-1]["id"] if len(rows) == 500 else None
        while True:
            try:
                row = await asyncio.wait_for(queue.get(), keepalive_s)
            except asyncio.TimeoutError:
                yield None
                continue
            if row is None:
                return
            if row is REVOKED:
                raise KeyRevoked
            if row["id"] not in sent and flt.matches(row) and await relevant(pool, flt, row):
                yield message(row)
    finally:
        hub.unsubscribe(queue)
