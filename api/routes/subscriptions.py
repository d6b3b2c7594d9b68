"""Subscriptions to alerts (scope `subscribe`): a key sees and changes only its own; another
key's subscription is a 404, never a 403, so ids reveal nothing. A webhook subscription's
secret is generated here and shown once, in the creation response."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError

from api import queries as q
from api import webhooks
from api.deps import ConnDep, Cursor, DbDep, busy, CursorsDep, SettingsDep, StrictJSONRoute, Subscriber
from api.schemas import (DeliveryLog, Message, SubscriptionCreate, SubscriptionCreated, SubscriptionPublic,
                         SubscriptionUpdate)
from core.settings import Settings

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"], route_class=StrictJSONRoute)
SubId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NOT_FOUND = {404: {"model": Message}}


def public(row) -> dict:
    d = dict(row)
    return {**d, "delivery": d.pop("kind"), "url": d.pop("target_url")}


async def check_url(url: str, settings: Settings) -> None:
    try:
        await webhooks.resolve(url, allow_http=settings.webhook_allow_http, allow_private=settings.webhook_allow_private)
    except webhooks.UnsafeTarget as exc:  # shaped like every other 422: a list of field errors
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "url"), "input": url,
                                        "msg": f"webhook url refused: {exc}"}]) from None


async def owned(conn, sub_id: int, principal) -> dict:
    row = await conn.fetchrow(q.GET_SUBSCRIPTION, sub_id, principal.id)
    if row is None:
        raise HTTPException(404, f"subscription {sub_id} not found")
    return row


class KeyQueue:
    """One create at a time per API key in this process, queued before a pooled connection is
    taken: twenty clients creating under one key wait here, not in Postgres on the key's row lock
    holding twenty of the pool's connections (the lock still guards the cap across processes)."""

    def __init__(self):
        self.locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}  # key id -> (lock, [requests using it])

    @asynccontextmanager
    async def turn(self, key_id: int, timeout_s: float):
        """Waits at most `timeout_s` for its turn (then 503 busy, like a pool wait)."""
        lock, users = self.locks.setdefault(key_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            try:
                await asyncio.wait_for(lock.acquire(), timeout_s)
            except TimeoutError:
                raise busy() from None
            try:
                yield
            finally:
                lock.release()
        finally:
            users[0] -= 1
            if not users[0]:  # no one holds or waits for it: bounded by the keys creating right now
                del self.locks[key_id]


CREATES = KeyQueue()


@router.post("", response_model=SubscriptionCreated, status_code=201, responses={409: {"model": Message}},
             summary="Create a subscription (webhook: the signing secret is in this response only)")
async def create(body: SubscriptionCreate, db: DbDep, principal: Subscriber, settings: SettingsDep):
    await db.release()  # the key lookup's connection: not held through DNS or the queue below
    if body.url is not None:
        await check_url(body.url, settings)
    secret = webhooks.new_secret() if body.delivery == "webhook" else None
    cap = settings.api_max_subscriptions_per_key
    async with CREATES.turn(principal.id, settings.api_pool_timeout_s):
        conn = await db.conn()
        async with conn.transaction():  # the key's row lock makes count-then-insert atomic per key
            await conn.execute(q.LOCK_API_KEY, principal.id)
            if await conn.fetchval(q.COUNT_SUBSCRIPTIONS, principal.id) >= cap:
                raise HTTPException(409, f"at most {cap} subscriptions per API key")
            row = await conn.fetchrow(q.INSERT_SUBSCRIPTION, principal.id, body.name, body.delivery, body.url,
                                      secret, body.key_types, body.topics, body.tickers, body.min_severity,
                                      body.min_relevance)
        await db.release()
    return {**public(row), "secret": secret}


@router.get("", response_model=list[SubscriptionPublic], summary="This key's subscriptions")
async def list_subscriptions(conn: ConnDep, principal: Subscriber):
    return [public(r) for r in await conn.fetch(q.LIST_SUBSCRIPTIONS, principal.id)]


@router.get("/{sub_id}", response_model=SubscriptionPublic, responses=NOT_FOUND, summary="One subscription")
async def get_subscription(sub_id: SubId, conn: ConnDep, principal: Subscriber):
    return public(await owned(conn, sub_id, principal))


@router.patch("/{sub_id}", response_model=SubscriptionPublic, responses=NOT_FOUND,
              summary="Change filters, URL or name; `enabled: true` re-enables a disabled one")
async def update(sub_id: SubId, body: SubscriptionUpdate, db: DbDep, principal: Subscriber,
                 settings: SettingsDep):
    current = await owned(await db.conn(), sub_id, principal)
    if body.url is not None:
        if current["kind"] != "webhook":
            raise HTTPException(400, "a stream subscription has no url")
        await db.release()  # not held through DNS
        await check_url(body.url, settings)
    conn = await db.conn()
    row = await conn.fetchrow(q.UPDATE_SUBSCRIPTION, sub_id, principal.id, body.name, body.url, body.key_types,
                              body.topics, body.tickers, body.min_severity, body.enabled,
                              "min_relevance" in body.model_fields_set, body.min_relevance)
    if row is None:  # deleted meanwhile
        raise HTTPException(404, f"subscription {sub_id} not found")
    return public(row)


@router.delete("/{sub_id}", status_code=204, response_class=Response, responses=NOT_FOUND,
               summary="Delete a subscription (its pending deliveries go with it)")
async def delete(sub_id: SubId, conn: ConnDep, principal: Subscriber) -> Response:
    if await conn.fetchval(q.DELETE_SUBSCRIPTION, sub_id, principal.id) is None:
        raise HTTPException(404, f"subscription {sub_id} not found")
    return Response(status_code=204)


@router.get("/{sub_id}/deliveries", response_model=DeliveryLog, responses=NOT_FOUND,
            summary="The delivery log: every webhook attempt, newest first")
async def deliveries(sub_id: SubId, conn: ConnDep, principal: Subscriber, cursors: CursorsDep, cursor: Cursor = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100):
    await owned(conn, sub_id, principal)
    before = cursors.decode(cursor, (int,))[0] if cursor else 2**63 - 1
    rows = await conn.fetch(q.DELIVERY_LOG, sub_id, before, limit + 1)
    items = rows[:limit]
    return DeliveryLog(items=[dict(r) for r in items],
                       next_cursor=cursors.encode(items[-1]["id"]) if len(rows) > limit else None)
