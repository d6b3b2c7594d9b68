"""GET /v1/events: scored events, newest first, keyset pages on (published_at, source, id).
A cursor carries the last row's key and the page's time window, so later pages neither
repeat nor skip rows while the worker keeps inserting (new rows are newer than the window's
end or were already in it). A window over a raw day past retention whose partitions were
dropped is a 410 saying where its archive is (api/history.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api import history
from api import queries as q
from api.deps import (ReadConnDep, Cursor, CursorsDep, Limit, SettingsDep, StrictJSONRoute, TimeRange, fast_json,
                      time_range)
from api.entities import attach
from api.schemas import EventPage, Message, Relevance, Sentiment, Ticker, Topic

router = APIRouter(prefix="/v1/events", tags=["events"], route_class=StrictJSONRoute)


@router.get("", response_model=EventPage, responses={410: {"model": Message}},
            summary="Scored events, filtered, cursor-paged (newest first)")
async def list_events(
    conn: ReadConnDep, cursors: CursorsDep, settings: SettingsDep,
    window: Annotated[TimeRange, Depends(time_range(timedelta(hours=24), timedelta(days=31)))],
    topic: Annotated[list[Topic], Query(max_length=20)] = [],
    ticker: Annotated[list[Ticker], Query(max_length=50)] = [],
    source: Annotated[list[Annotated[str, Query(min_length=1, max_length=64)]], Query(max_length=20)] = [],
    sentiment: Annotated[list[Sentiment], Query(max_length=3)] = [],
    min_score: Annotated[float | None, Query(ge=-1, le=1)] = None,
    max_score: Annotated[float | None, Query(ge=-1, le=1)] = None,
    model_version: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    q_: Annotated[str | None, Query(alias="q", min_length=1, max_length=200, description="text contains (case-insensitive)")] = None,
    min_relevance: Annotated[Relevance | None, Query(description="with `ticker`: items at least this much about it "
                                                                 "(entity rows; cashtags and feed tags always match); "
                                                                 "default: the items the worker counted for the "
                                                                 "ticker (FINSENT_ENTITY_MIN_RELEVANCE when stored), "
                                                                 "the same items as its series")] = None,
    novel_only: Annotated[bool, Query(description="only the first item of each story (no copies)")] = False,
    limit: Limit = 100, cursor: Cursor = None,
):
    after, start, end = None, window.start, window.end
    if cursor:
        *after, start, end = cursors.decode(cursor, (datetime, str, str, datetime, datetime))
    await history.refuse_archived(conn, settings, start, end)  # 410: a day of the window is in the archive only
    w = q.events_where(start=start, end=end, topics=topic, tickers=ticker, sources=source, sentiments=sentiment,
                       min_score=min_score, max_score=max_score, model_version=model_version, q=q_,
                       after=tuple(after) if after else None,
                       min_relevance=min_relevance, novel_only=novel_only)
    sql, args = q.events_page(w, limit + 1)
    rows = await conn.fetch(sql, *args)
    items, more = rows[:limit], len(rows) > limit
    last = items[-1] if items else None
    nxt = cursors.encode(last["published_at"], last["source"], last["id"], start, end) if more else None
    return fast_json({"items": await attach(conn, [dict(r) for r in items]), "next_cursor": nxt})
