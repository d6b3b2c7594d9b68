"""GET /v1/series: zero-filled time buckets per topic, ticker or source, summed from the
rollups the worker maintains (never a scan of scored_event; except `novel_only`, which counts the
first item of each story from scored_event, within raw retention). Past a rollup's retention the
answer comes from a coarser one and says which (`resolution`; api/history.py). The span is aligned to
whole buckets: `start` rounded down, `end` rounded up, and the answer states the aligned span,
which is exactly what it counts (a bucket is never cut by `end`). Answers are cached until the
rollups under them change (api/series_cache.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from api import crud
from api import history
from api import queries as q
from api.deps import (ReadDbDep, SettingsDep, StrictJSONRoute, TimeRange, bad_request,
                      replica_unavailable, time_range)
from api.schemas import SeriesResponse
from api.series_cache import Rollup

router = APIRouter(prefix="/v1/series", tags=["series"], route_class=StrictJSONRoute)
BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "6h": 21600, "12h": 43200, "1d": 86400}
MAX_POINTS = 50_000  # keys × buckets in one response
# the span: hourly rollups are kept forever by default, so a year or more of daily buckets is a fair
# question; the work is bounded by MAX_POINTS and the rows of the rollup chosen, not by the span
LONGEST = timedelta(days=3660)
# rollup rows (keys × span) up to which a series is assembled from the rollup pieces kept in memory
# (api/series_pieces.py): 8 MB of float64 per request at most; a longer span of coarse buckets (years
# of daily buckets for 50 keys) is summed per bucket in Postgres instead, and only its answer is cached
PIECES_UP_TO = 200_000


@router.get("", response_model=SeriesResponse, summary="Time-bucketed counts, negative share and mean score")
async def get_series(
    request: Request, db: ReadDbDep, settings: SettingsDep,
    window: Annotated[TimeRange, Depends(time_range(timedelta(hours=24), LONGEST))],
    key: Annotated[list[Annotated[str, Query(min_length=1, max_length=64)]],
                   Query(min_length=1, max_length=50, description="topic slugs, tickers or sources")],
    key_type: Literal["topic", "ticker", "source"] = "ticker",
    bucket: Literal[tuple(BUCKETS)] = "1h",  # type: ignore[valid-type]
    novel_only: Annotated[bool, Query(description="count only the first item of each story (from scored events: "
                                                  "within raw retention only, else 400)")] = False,
):
    step = timedelta(seconds=BUCKETS[bucket])
    start, end = crud.floor_time(window.start, step), crud.ceil_time(window.end, step)
    keys = sorted(set(key))
    if len(keys) * ((end - start) // step) > MAX_POINTS:
        raise bad_request(f"too many points (keys × buckets > {MAX_POINTS}): use a coarser bucket or a shorter range")
    if novel_only:
        since = history.raw_kept_since(settings)
        if since is not None and start < since:
            raise bad_request(f"novel_only counts scored events, kept {settings.retention_raw_days} days (from "
                              f"{since.isoformat()}): start later, or drop novel_only to read the rollups")
        await history.refuse_archived(await db.conn(), settings, start, end)
        resolution, sql = "raw", q.novel_series_sql(key_type)
    else:
        resolution, sql = history.rollup_for(settings, BUCKETS[bucket], start, BUCKETS)
    if not novel_only:
        await db.release()  # the key check's connection; the read takes one of its own (one at a time)

    def answer(rows) -> bytes:
        return orjson.dumps({"key_type": key_type, "bucket": bucket, "resolution": resolution,
                             "novel_only": novel_only, "start": start, "end": end, "series": rows},
                            option=orjson.OPT_SERIALIZE_NUMPY)
    if novel_only:  # not cached: stories are also assigned by the backfill, which changes no rollup
        rows = await crud.series(await db.conn(), key_type=key_type, keys=keys, start=start, end=end, step=step,
                                 as_numpy=True, sql=sql)
        return Response(answer(rows), media_type="application/json")
    cache = request.app.state.series_cache
    seconds, _, table, col, _ = next(r for r in history.ROLLUPS if r[1] == resolution)
    rollup, ratio = Rollup(seconds, table, col), BUCKETS[bucket] // seconds

    async def read() -> bytes:
        # summed per bucket in Postgres: a long span (too many rows to keep), or coarse buckets while
        # nothing is kept (the listener is down or the cache is off: fewer rows to ship than pieces)
        if (len(keys) * (end - start).total_seconds() // seconds > PIECES_UP_TO
                or (ratio >= q.GROUP_FROM and not cache.listening)):
            async with cache.pool.acquire(timeout=cache.acquire_timeout_s) as conn:
                return answer(await crud.series(conn, key_type=key_type, keys=keys, start=start, end=end, step=step,
                                                as_numpy=True, sql=sql))
        rows = await cache.rollup_rows(rollup, key_type, keys, start.timestamp(), end.timestamp())
        return answer(crud.series_from_rollup(rows, keys=keys, start=start, step=step, ratio=ratio))
    try:
        body = await cache.get((key_type, tuple(keys), bucket, start, end), end.timestamp(), read)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
        if request.app.state.read_pool is request.app.state.pool:
            raise
        raise replica_unavailable() from exc
    return Response(body, media_type="application/json")
