"""GET /v1/stories (recent stories, newest activity first, by ticker or topic) and
GET /v1/stories/{story_id} (one story and its events, oldest first, cursor pages). Stories are
clusters of near-duplicate items (core/stories.py): a story's id is its first event's `source/id`; the
index keeps a story for its 72 h horizon, after which a story is summed from its events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from api import queries as q
from api.deps import (EARLIEST, Cursor, CursorsDep, ReadConnDep, StrictJSONRoute, TimeRange, fast_json,
                      time_range)
from api.entities import attach
from api.schemas import Message, StoryDetail, StoryPage, Ticker, Topic
from core.stories import STORY_ID_MAX

router = APIRouter(prefix="/v1/stories", tags=["stories"], route_class=StrictJSONRoute)
StoryId = Annotated[str, Path(min_length=1, max_length=STORY_ID_MAX, pattern=r"^[^\x00]+$",
                              description="a story id: its first event's `source/id` (a story first seen "
                                          "before migration 0011: the bare id)")]


@router.get("", response_model=StoryPage, summary="Recent stories with their copy counts and sources")
async def list_stories(
    conn: ReadConnDep, cursors: CursorsDep,
    window: Annotated[TimeRange, Depends(time_range(timedelta(hours=24), timedelta(days=31)))],
    ticker: Annotated[list[Ticker], Query(max_length=50, description="stories whose first event names one of "
                                                                    "these companies")] = [],
    topic: Annotated[list[Topic], Query(max_length=20, description="stories whose first event has one of "
                                                                   "these topics")] = [],
    min_copies: Annotated[int, Query(ge=1, le=1_000_000, description="at least this many copies")] = 1,
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50, cursor: Cursor = None,
):
    """Stories last seen in [start, end) (the index holds each story for its 72 h horizon),
    newest activity first; each with its first event's headline and text."""
    after = cursors.decode(cursor, (datetime, str)) if cursor else None
    w = q.stories_where(start=window.start, end=window.end, tickers=ticker, topics=topic, min_copies=min_copies,
                        after=after)
    sql, args = q.stories_page(w, limit + 1)
    rows = await conn.fetch(sql, *args)
    items = rows[:limit]
    nxt = cursors.encode(items[-1]["last_at"], items[-1]["story_id"]) if len(rows) > limit else None
    return fast_json({"items": [dict(r) for r in items], "next_cursor": nxt})


@router.get("/{story_id:path}", response_model=StoryDetail, responses={404: {"model": Message}},
            summary="One story and its events (oldest first, cursor pages)")
async def get_story(story_id: StoryId, conn: ReadConnDep, cursors: CursorsDep,
                    limit: Annotated[int, Query(ge=1, le=1000, description="events per page")] = 100,
                    cursor: Cursor = None):
    story = await conn.fetchrow(q.STORY_BY_ID, story_id)
    if story is None:  # past the index's horizon: summed from its events, if any are still stored
        agg = await conn.fetchrow(q.STORY_FROM_EVENTS, story_id)
        if agg is None or not agg["copies"]:
            raise HTTPException(404, f"story {story_id} not found")
        founder = await conn.fetchrow(q.STORY_FOUNDER, story_id)
        story = {"story_id": story_id, "keys": [], **dict(agg), **(dict(founder) if founder else
                 {"source": "", "headline": None, "text": None, "topic": None, "sentiment": None, "score": None})}
    after = cursors.decode(cursor, (datetime, str, str)) if cursor else (EARLIEST, "", "")
    rows = await conn.fetch(q.STORY_EVENTS, story_id, *after, limit + 1)
    items = rows[:limit]
    nxt = (cursors.encode(items[-1]["published_at"], items[-1]["source"], items[-1]["id"])
           if len(rows) > limit else None)
    return fast_json({**dict(story), "events": await attach(conn, [dict(r) for r in items]), "next_cursor": nxt})
