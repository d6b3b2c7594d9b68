"""GET /v1/entities?q=: search the symbol directory (ticker, company name, aliases such as
brands and former names). GET /v1/entities/{ticker}: its directory entry and what the stored
items said about it in a window (event_entity rows at or above a relevance, counted as the
worker counts them; the ticker's series is /v1/series?key_type=ticker&key=...)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from api import queries as q
from api.deps import ReadConnDep, Reader, SettingsDep, StrictJSONRoute, TimeRange, time_range
from api.entities import symbol_json
from api.schemas import EntityDetail, EntitySearch, Message, Relevance

router = APIRouter(prefix="/v1/entities", tags=["entities"], route_class=StrictJSONRoute)
# as typed by people: $aapl, brk.b, BRK-B, BRK/B (normalised like the linker does)
TickerPath = Annotated[str, Path(min_length=1, max_length=17, pattern=r"^\$?[A-Za-z0-9][A-Za-z0-9.\-/]{0,15}$")]


@router.get("", response_model=EntitySearch, summary="Search the symbol directory by ticker, name or alias")
async def search(request: Request, _: Reader,
                 q_: Annotated[str, Query(alias="q", min_length=1, max_length=100,
                                          description="ticker, company name or alias (prefix or part)")],
                 limit: Annotated[int, Query(ge=1, le=100)] = 20):
    linker = await request.app.state.entities.linker()
    d = linker.directory
    return {"directory_version": d.version, "items": [symbol_json(d, s) for s in d.search(q_, limit)]}


@router.get("/{ticker}", response_model=EntityDetail, responses={404: {"model": Message}},
            summary="A ticker's directory entry and its recent counts and tone from stored items")
async def detail(ticker: TickerPath, request: Request, conn: ReadConnDep, settings: SettingsDep,
                 window: Annotated[TimeRange, Depends(time_range(timedelta(hours=24), timedelta(days=31)))],
                 min_relevance: Annotated[Relevance | None, Query(description="default: "
                                                                  "FINSENT_ENTITY_MIN_RELEVANCE")] = None):
    from models.entities import normalize_ticker

    linker = await request.app.state.entities.linker()
    d = linker.directory
    tk = normalize_ticker(ticker)
    if len(tk) > 16:
        raise HTTPException(404, f"{ticker} is neither in the symbol directory nor in stored items")
    cut = settings.entity_min_relevance if min_relevance is None else min_relevance
    row = await conn.fetchrow(q.ENTITY_RECENT, tk, window.start, window.end, cut)
    passing = await conn.fetchval(q.ENTITY_PASSING, tk, window.start, window.end, cut)
    symbol = d.get(tk)
    if symbol is None and not row["n"] and not passing:
        raise HTTPException(404, f"{tk} is neither in the symbol directory nor in stored items of the window")
    n = row["n"]
    recent = {**dict(row), "window_start": window.start, "window_end": window.end, "min_relevance": cut,
              "negative_share": row["negatives"] / n if n else None, "passing_mentions": passing}
    return {"ticker": tk, "directory_version": d.version, "symbol": symbol_json(d, symbol) if symbol else None,
            "recent": recent}
