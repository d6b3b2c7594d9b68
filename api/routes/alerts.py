"""GET /v1/alerts (cursor pages, newest first) and GET /v1/alerts/{id} with its evidence: the
sample events in full, the key's per-minute series around the window, and its change history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from api import crud, history
from api import queries as q
from api.deps import (Cursor, CursorsDep, Limit, ReadConnDep, SettingsDep, StrictJSONRoute, TimeRange,
                      time_range)
from api.entities import attach
from api.schemas import AlertDetail, AlertPage, KeyType, Message, Severity

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], route_class=StrictJSONRoute)
AROUND = timedelta(minutes=60)  # series context each side of the alert window


@router.get("", response_model=AlertPage, summary="Alerts, filtered, cursor-paged (newest first)")
async def list_alerts(
    conn: ReadConnDep, cursors: CursorsDep,
    window: Annotated[TimeRange, Depends(time_range(timedelta(days=7), timedelta(days=366)))],
    state: Literal["open", "resolved"] | None = None,
    key_type: KeyType | None = None,
    key: Annotated[list[Annotated[str, Query(min_length=1, max_length=64)]], Query(max_length=50)] = [],
    min_severity: Severity | None = None,
    limit: Limit = 100, cursor: Cursor = None,
) -> AlertPage:
    after = cursors.decode(cursor, (datetime, int)) if cursor else None
    w = q.alerts_where(start=window.start, end=window.end, state=state, key_type=key_type, keys=key,
                       min_severity=min_severity, after=after)
    rows = await conn.fetch(*_page(w, limit + 1))
    items = rows[:limit]
    nxt = cursors.encode(items[-1]["opened_at"], items[-1]["id"]) if len(rows) > limit else None
    return AlertPage(items=[crud.alert_json(r) for r in items], next_cursor=nxt)


def context_series(settings, start) -> tuple[str, timedelta, str]:
    """The finest bucket whose rollup still holds `start` (per minute, else 5-minute, else hourly)."""
    for bucket, seconds in (("1m", 60), ("5m", 300), ("1h", 3600)):
        try:
            _, sql = history.rollup_for(settings, seconds, start, {})
        except HTTPException:
            continue
        return bucket, timedelta(seconds=seconds), sql
    return "1h", timedelta(hours=1), q.series_sql(3600)


def _page(w: q.Where, limit: int) -> tuple:
    sql, args = q.alerts_page(w, limit)
    return (sql, *args)


@router.get("/{alert_id}", response_model=AlertDetail, responses={404: {"model": Message}},
            summary="One alert with its sample events, the key's series around it and its history")
async def get_alert(conn: ReadConnDep, settings: SettingsDep, alert_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> AlertDetail:
    alert = await conn.fetchrow(q.ALERT_BY_ID, alert_id)
    if alert is None:
        raise HTTPException(404, f"alert {alert_id} not found")
    pairs = [s.split("/", 1) for s in alert["sample_event_ids"] if "/" in s]  # "source/id"
    lo, hi = alert["window_start"] - timedelta(days=1), alert["window_end"] + timedelta(days=1)
    samples = await conn.fetch(q.ALERT_SAMPLES, [p[0] for p in pairs], [p[1] for p in pairs], lo, hi)
    bucket, step, sql = context_series(settings, alert["window_start"] - AROUND)
    series = await crud.series(conn, key_type=alert["key_type"], keys=[alert["key"]],
                               start=crud.floor_time(alert["window_start"] - AROUND, step),
                               end=crud.ceil_time(alert["window_end"] + AROUND, step), step=step, sql=sql)
    history = await conn.fetch(q.ALERT_HISTORY, alert_id)
    return AlertDetail(**crud.alert_json(alert), series_bucket=bucket, samples=await attach(conn, [dict(r) for r in samples]), series=series[0],
                       history=[dict(r) for r in history])
