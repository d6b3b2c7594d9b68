"""GET /v1/series: zero-filled time buckets per topic, ticker or source, summed from the
per-minute rollups the worker maintains (never a scan of scored_event). The span is aligned to
whole buckets: `start` rounded down, `end` rounded up, and the answer states the aligned span,
which is exactly what it counts (a bucket is never cut by `end`). Answers are cached until the
rollups under them change (api/series_cache.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from api import crud
from api.deps import DbDep, Reader, StrictJSONRoute, TimeRange, bad_request, time_range
from api.schemas import SeriesResponse

router = APIRouter(prefix="/v1/series", tags=["series"], route_class=StrictJSONRoute)
BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "6h": 21600, "12h": 43200, "1d": 86400}
MAX_POINTS = 50_000  # keys × buckets in one response


@router.get("", response_model=SeriesResponse, summary="Time-bucketed counts, negative share and mean score")
async def get_series(
    request: Request, db: DbDep, _: Reader,
    window: Annotated[TimeRange, Depends(time_range(timedelta(hours=24), timedelta(days=31)))],
    key: Annotated[list[Annotated[str, Query(min_length=1, max_length=64)]],
                   Query(min_length=1, max_length=50, description="topic slugs, tickers or sources")],
    key_type: Literal["topic", "ticker", "source"] = "ticker",
    bucket: Literal[tuple(BUCKETS)] = "1h",  # type: ignore[valid-type]
):
    step = timedelta(seconds=BUCKETS[bucket])
    start, end = crud.floor_time(window.start, step), crud.ceil_time(window.end, step)
    keys = sorted(set(key))
    if len(keys) * ((end - start) // step) > MAX_POINTS:
        raise bad_request(f"too many points (keys × buckets > {MAX_POINTS}): use a coarser bucket or a shorter range")
    await db.release()  # the key check's connection; the read takes one of its own (one at a time)

    async def read(conn) -> bytes:
        rows = await crud.series(conn, key_type=key_type, keys=keys, start=start, end=end, step=step, as_numpy=True)
        return orjson.dumps({"key_type": key_type, "bucket": bucket, "start": start, "end": end, "series": rows},
                            option=orjson.OPT_SERIALIZE_NUMPY)
    body = await request.app.state.series_cache.get((key_type, tuple(keys), bucket, start, end), end.timestamp(),
                                                    read)
    return Response(body, media_type="application/json")
