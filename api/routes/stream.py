"""The live alert stream: GET /v1/stream/alerts (Server-Sent Events) and its WebSocket twin
/v1/stream/alerts/ws. Each message is an alert change (opened, escalated, resolved) whose id
is the alert_event id: reconnect with `Last-Event-ID` (or `last_event_id=`) to resume after it.
Filters come from one of the caller's subscriptions (`subscription_id`, needs a key with
`subscribe`) or ad hoc. Keep-alive comments flow while it is quiet.

    curl -N http://127.0.0.1:8000/v1/stream/alerts?key_type=ticker
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, WebSocket
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api import queries as q
from api.deps import Db, DbDep, MaybePrincipal, Reader, StrictJSONRoute, get_principal, new_db, reader, require
from api.limits import client_address
from api.live import AlertFilter, KeyRevoked, alert_feed
from api.metrics import SSE_CLIENTS
from api.schemas import KeyType, Message, Severity, Ticker, Topic

router = APIRouter(prefix="/v1/stream", tags=["stream"], route_class=StrictJSONRoute)
EventId = Annotated[int, Query(ge=0, le=2**63 - 1)]


SubscriptionId = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="use this subscription's filters")]
KeyTypes = Annotated[list[KeyType], Query(max_length=2)]
Topics = Annotated[list[Topic], Query(max_length=20)]
Tickers = Annotated[list[Ticker], Query(max_length=200)]
MinRelevance = Annotated[float | None, Query(ge=0, le=1, description="ticker alerts only when their evidence has an "
                                                                 "item about the company at least this relevant")]


async def stream_filter(db: DbDep, principal: MaybePrincipal, subscription_id: SubscriptionId = None,
                        key_type: KeyTypes = [], topic: Topics = [], ticker: Tickers = [],
                        min_severity: Severity = "low", min_relevance: MinRelevance = None) -> AlertFilter:
    return await build_filter(db, principal, subscription_id, key_type, topic, ticker, min_severity, min_relevance)


async def build_filter(db: Db, principal, subscription_id, key_type, topic, ticker, min_severity,
                       min_relevance: float | None = None) -> AlertFilter:
    if subscription_id is None:
        return AlertFilter(tuple(key_type) or ("topic", "ticker"), tuple(topic), tuple(ticker), min_severity,
                           min_relevance)
    owner = await require("subscribe")(principal)
    row = await (await db.conn()).fetchrow(q.GET_SUBSCRIPTION, subscription_id, owner.id)
    if row is None:
        raise HTTPException(404, f"subscription {subscription_id} not found")
    return AlertFilter(tuple(row["key_types"]), tuple(row["topics"]), tuple(row["tickers"]), row["min_severity"],
                       row["min_relevance"])


async def stream_slot(request: Request, principal: MaybePrincipal) -> AsyncIterator[None]:
    """One of the capped stream slots (per key, per address): 429 when none is left, given back
    when the stream ends."""
    slots = request.app.state.stream_slots
    names = slots.take(principal.id if principal else None, client_address(request.scope))
    try:
        yield
    finally:
        slots.give_back(names)


async def resume_from(
    last_event_id: Annotated[str | None, Header(max_length=32, description="resume after this id")] = None,
    last_event_id_q: Annotated[int | None, Query(alias="last_event_id", ge=0, le=2**63 - 1,
                                                 description="as the header, for clients that cannot set it")] = None,
) -> int | None:
    """A dependency, so a bad value is a 400 before the stream starts."""
    if last_event_id is None:
        return last_event_id_q
    if not (last_event_id.isascii() and last_event_id.isdigit()) or len(last_event_id) > 18:
        raise HTTPException(400, "Last-Event-ID must be an alert event id")
    return int(last_event_id)


@router.get("/alerts", response_class=EventSourceResponse, responses={404: {"model": Message}, 429: {"model": Message}},
            summary="Server-Sent Events of alert changes, resumable with Last-Event-ID")
async def sse_alerts(
    request: Request, db: DbDep, principal: Reader, flt: Annotated[AlertFilter, Depends(stream_filter)],
    start: Annotated[int | None, Depends(resume_from)], _slot: Annotated[None, Depends(stream_slot)],
) -> AsyncIterator[ServerSentEvent]:
    """Ends with an `event: revoked` message when the API key is revoked."""
    app = request.app
    await db.release()  # a stream holds no pooled connection while it waits
    SSE_CLIENTS.inc()
    try:
        yield ServerSentEvent(comment="connected", retry=2000)
        async for msg in alert_feed(app.state.hub, app.state.pool, flt, start, app.state.settings.sse_keepalive_s,
                                    principal.id if principal else None):
            if msg is None:
                yield ServerSentEvent(comment="keep-alive")
            else:
                yield ServerSentEvent(raw_data=json.dumps(msg, default=str), event=msg["event"], id=str(msg["id"]))
    except KeyRevoked:
        yield ServerSentEvent(event="revoked", raw_data=json.dumps({"detail": "API key revoked"}))
    finally:
        SSE_CLIENTS.dec()


@router.websocket("/alerts/ws")
async def ws_alerts(websocket: WebSocket, subscription_id: SubscriptionId = None, key_type: KeyTypes = [],
                    topic: Topics = [], ticker: Tickers = [], min_severity: Severity = "low",
                    min_relevance: MinRelevance = None, last_event_id: EventId | None = None) -> None:
    """Same messages as the SSE stream, as JSON text frames; {"type": "keep-alive"} when quiet.
    The API key goes in the X-API-Key header; a refused key or subscription, or no stream slot
    left, fails the handshake (403). A revoked key's stream is closed with code 1008."""
    app, db = websocket.app, new_db(websocket.app)
    slots = app.state.stream_slots
    try:
        principal = await get_principal(db, websocket.headers.get("x-api-key"), None)
        await reader(app.state.settings, principal)
        flt = await build_filter(db, principal, subscription_id, key_type, topic, ticker, min_severity, min_relevance)
        names = slots.take(principal.id if principal else None, client_address(websocket.scope))
    except HTTPException as exc:
        await websocket.close(code=1008, reason=str(exc.detail)[:120])
        return
    finally:
        await db.release()
    await websocket.accept()
    SSE_CLIENTS.inc()
    feed = alert_feed(app.state.hub, app.state.pool, flt, last_event_id, app.state.settings.sse_keepalive_s,
                      principal.id if principal else None)
    tasks = [asyncio.create_task(_send(websocket, feed)), asyncio.create_task(_until_closed(websocket))]
    try:  # a client that closes is noticed at once, not at the next keep-alive
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        SSE_CLIENTS.dec()
        slots.give_back(names)


async def _send(websocket: WebSocket, feed: AsyncIterator[dict | None]) -> None:
    try:
        async for msg in feed:
            await websocket.send_text(json.dumps(msg or {"type": "keep-alive"}, default=str))
    except KeyRevoked:
        await websocket.close(code=1008, reason="API key revoked")
        return
    await websocket.close()  # too far behind: reconnect with last_event_id


async def _until_closed(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
