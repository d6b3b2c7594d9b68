"""GET /v1/movers: keys whose negative share moved most against their own trailing baseline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api import crud
from api.deps import EARLIEST, ReadConnDep, StrictJSONRoute, bad_request, utc
from api.schemas import KeyType, MoversResponse

router = APIRouter(prefix="/v1/movers", tags=["movers"], route_class=StrictJSONRoute)
MINUTE = timedelta(minutes=1)


@router.get("", response_model=MoversResponse, summary="Largest moves of negative share against the baseline")
async def get_movers(
    conn: ReadConnDep,
    key_type: KeyType = "topic",
    window_minutes: Annotated[int, Query(ge=1, le=1440, description="the recent window")] = 60,
    baseline_hours: Annotated[int, Query(ge=1, le=168, description="trailing span before the window")] = 24,
    min_count: Annotated[int, Query(ge=1, le=100_000, description="least items in the window")] = 10,
    end: Annotated[datetime | None, Query(description="window end, rounded up to a minute; default now")] = None,
    direction: Literal["up", "down", "both"] = "up",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> MoversResponse:
    end = crud.ceil_time(utc(end) if end else datetime.now(timezone.utc), MINUTE)
    if end < EARLIEST + timedelta(days=8):
        raise bad_request("end must lie between 1970 and 2200")
    window, baseline = timedelta(minutes=window_minutes), timedelta(hours=baseline_hours)
    items = await crud.movers(conn, key_type=key_type, end=end, window=window, baseline=baseline, min_count=min_count)
    sign = {"up": -1, "down": 1, "both": 0}[direction]
    items.sort(key=lambda m: (sign * m["delta"] if sign else -abs(m["delta"]), m["key"]))
    if direction != "both":
        items = [m for m in items if sign * m["delta"] < 0]
    start = end - window
    return MoversResponse(key_type=key_type, window_start=start, window_end=end, baseline_start=start - baseline,
                          items=items[:limit])
