"""The live alert stream: GET /v1/stream/alerts (Server-Sent Events) and its WebSocket twin
/v1/stream/alerts/ws. Each message is an alert change (opened, escalated, resolved) whose id
is the alert_event id: reconnect with `Last-Event-ID` (or `last_event_id=`) to resume after it.
Filters come from one of the caller's subscriptions (`subscription_id`, needs a key with
`subscribe`) or ad hoc. Keep-alive comments flow while it is quiet.

    curl -N http://127.0.0.1:8000/v1/stream/alerts?key_type=ticker
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api import queries as q
from api.deps import MaybePrincipal, Reader, get_principal, reader, require
from api.live import AlertFilter, alert_feed
from api.metrics import SSE_CLIENTS
from api.schemas import KeyType, Message, Severity, Ticker, Topic

router = APIRouter(prefix="/v1/stream", tags=["stream"])
EventId = Annotated[int, Query(ge=0, le=2**63 - 1)]


SubscriptionId = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="use this subscription's filters")]
KeyTypes = Annotated[list[KeyType], Query(max_length=2)]
Topics = Annotated[list[Topic], Query(max_length=20)]
Tickers = Annotated[list[Ticker], Query(max_length=200)]


async def stream_filter(request: Request, principal: MaybePrincipal, subscription_id: SubscriptionId = None,
                        key_type: KeyTypes = [], topic: Topics = [], ticker: Tickers = [],
                        min_severity: Severity = "low") -> AlertFilter:
    return await build_filter(request.app.state.pool, principal, subscription_id, key_type, topic, ticker, min_severity)


async def build_filter(pool, principal, subscription_id, key_type, topic, ticker, min_severity) -> AlertFilter:
    if subscription_id is None:
        return AlertFilter(tuple(key_type) or ("topic", "ticker"), tuple(topic), tuple(ticker), min_severity)
    owner = await require("subscribe")(principal)
    row = await pool.fetchrow(q.GET_SUBSCRIPTION, subscription_id, owner.id)
    if row is None:
        raise HTTPException(404, f"subscription {subscription_id} not found")
    return AlertFilter(tuple(row["key_types"]), tuple(row["topics"]), tuple(row["tickers"]), row["min_severity"])


async def resume_from(
    last_event_id: Annotated[str | None, Header(max_length=32, description="resume after this id")] = None,
    last_event_id_q: Annotated[int | None, Query(alias="last_event_id", ge=0, le=2**63 - 1,
                                                 description="as the header, for clients that cannot set it")] = None,
) -> int | None:
    """A dependency, so a bad value is a 400 before the stream starts."""
    if last_event_id is None:
        return last_event_id_q
    if not last_event_id.isdigit() or len(last_event_id) > 18:
        raise HTTPException(400, "Last-Event-ID must be an alert event id")
    return int(last_event_id)


@router.get("/alerts", response_class=EventSourceResponse, responses={404: {"model": Message}},
            summary="Server-Sent Events of alert changes, resumable with Last-Event-ID")
async def sse_alerts(
    request: Request, _: Reader, flt: Annotated[AlertFilter, Depends(stream_filter)],
    start: Annotated[int | None, Depends(resume_from)],
) -> AsyncIterator[ServerSentEvent]:
    app = request.app
    SSE_CLIENTS.inc()
    try:
        yield ServerSentEvent(comment="connected", retry=2000)
        async for msg in alert_feed(app.state.hub, app.state.pool, flt, start, app.state.settings.sse_keepalive_s):
            if msg is None:
                yield ServerSentEvent(comment="keep-alive")
            else:
                yield ServerSentEvent(raw_data=json.dumps(msg, default=str), event=msg["event"], id=str(msg["id"]))
    finally:
        SSE_CLIENTS.dec()


@router.websocket("/alerts/ws")
async def ws_alerts(websocket: WebSocket, subscription_id: SubscriptionId = None, key_type: KeyTypes = [],
                    topic: Topics = [], ticker: Tickers = [], min_severity: Severity = "low",
                    last_event_id: EventId | None = None) -> None:
    """Same messages as the SSE stream, as JSON text frames; {"type": "keep-alive"} when quiet.
    The API key goes in the X-API-Key header; a refused key or subscription fails the handshake (403)."""
    app = websocket.app
    try:
        principal = await get_principal(app.state.pool, websocket.headers.get("x-api-key"), None)
        await reader(app.state.settings, principal)
        flt = await build_filter(app.state.pool, principal, subscription_id, key_type, topic, ticker, min_severity)
    except HTTPException as exc:
        await websocket.close(code=1008, reason=str(exc.detail)[:120])
        return
    await websocket.accept()
    SSE_CLIENTS.inc()
    try:
        async for msg in alert_feed(app.state.hub, app.state.pool, flt, last_event_id, app.state.settings.sse_keepalive_s):
            await websocket.send_text(json.dumps(msg or {"type": "keep-alive"}, default=str))
    except WebSocketDisconnect:
        pass
    finally:
        SSE_CLIENTS.dec()
