"""Analysts' corrections (scope `feedback`): POST /v1/events/{source}/{id}/feedback stores who
corrected what and when; GET /v1/feedback lists them; GET /v1/feedback/export streams CSV or
JSONL (with the event text and the model's labels) for `finsent train --feedback`."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse

from api import queries as q
from api import history
from api.deps import (ConnDep, Cursor, CursorsDep, DbDep, FeedbackWriter, Limit, StrictJSONRoute, TimeRange,
                      time_range)
from api.schemas import FeedbackCreate, FeedbackPage, FeedbackPublic, Message

router = APIRouter(tags=["feedback"], route_class=StrictJSONRoute)
Window = Annotated[TimeRange, Depends(time_range(timedelta(days=30), timedelta(days=3660)))]
EXPORT_FIELDS = ("id", "source", "event_id", "published_at", "text", "model_topic", "model_sentiment", "topic",
                 "sentiment", "note", "created_by", "created_at")


@router.post("/v1/events/{source}/{event_id}/feedback", response_model=FeedbackPublic, status_code=201,
             responses={404: {"model": Message}}, summary="Correct an event's topic and/or sentiment")
async def create_feedback(source: Annotated[str, Path(min_length=1, max_length=64)],
                          event_id: Annotated[str, Path(min_length=1, max_length=256)],
                          body: FeedbackCreate, conn: ConnDep, principal: FeedbackWriter):
    event = await conn.fetchrow(q.EVENT_BY_KEY, source, event_id)
    if event is None:
        raise await history.not_found(conn, f"event {source}/{event_id}")
    return dict(await conn.fetchrow(q.INSERT_FEEDBACK, source, event_id, event["published_at"], body.topic,
                                    body.sentiment, body.note, principal.id, principal.name))


@router.get("/v1/feedback", response_model=FeedbackPage, summary="Feedback, newest first (cursor pages)")
async def list_feedback(conn: ConnDep, _: FeedbackWriter, cursors: CursorsDep, window: Window, limit: Limit = 100,
                        cursor: Cursor = None) -> FeedbackPage:
    before = cursors.decode(cursor, (int,))[0] if cursor else 2**63 - 1
    rows = await conn.fetch(q.LIST_FEEDBACK, window.start, window.end, before, limit + 1)
    items = rows[:limit]
    return FeedbackPage(items=[dict(r) for r in items],
                        next_cursor=cursors.encode(items[-1]["id"]) if len(rows) > limit else None)


@router.get("/v1/feedback/export", response_class=StreamingResponse, summary="Export feedback as CSV or JSONL",
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
async def export_feedback(db: DbDep, _: FeedbackWriter, window: Window,
                          format: Literal["csv", "jsonl"] = "jsonl") -> StreamingResponse:
    conn = await db.conn()  # the request's connection, given back when the body has been sent

    async def rows():
        async with conn.transaction():  # a server-side cursor: memory stays flat
            async for r in conn.cursor(q.EXPORT_FEEDBACK, window.start, window.end, prefetch=500):
                yield {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}

    media = "text/csv" if format == "csv" else "application/x-ndjson"
    body = _csv(rows()) if format == "csv" else (json.dumps(r) + "\n" async for r in rows())
    return StreamingResponse(body, media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="feedback.{format}"'})


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # + full-width forms
LEADING = " \t\r\n\x0b\x0c\u00a0\u3000"  # what a spreadsheet may skip before reading a formula


def spreadsheet_safe(value):
    """A text cell that a spreadsheet would run as a formula gets a leading quote (OWASP's CSV
    injection advice): one starting with = + - @ (also full-width, also after blanks), tab, CR or
    LF. JSON lines keep the stored text."""
    if isinstance(value, str) and (value.startswith(FORMULA_START) or value.lstrip(LEADING).startswith(FORMULA_START)):
        return "'" + value
    return value


async def _csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, EXPORT_FIELDS)
    writer.writeheader()
    async for r in rows:
        writer.writerow({k: spreadsheet_safe(v) for k, v in r.items()})
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()
