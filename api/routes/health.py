"""Liveness, readiness (Postgres reachable and migrated to head) and Prometheus metrics."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import queries as q
from api.deps import PoolDep
from api.schemas import Health, Message, Ready

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health(request: Request) -> Health:
    return Health(status="ok", model=request.app.state.scorer.state())


@router.get("/ready", response_model=Ready, summary="Readiness: Postgres reachable, migrations at head",
            responses={503: {"model": Message}})
async def ready(request: Request, pool: PoolDep):
    head = request.app.state.alembic_head
    try:
        version = await pool.fetchval(q.ALEMBIC_VERSION, timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return JSONResponse({"detail": f"database unreachable: {type(exc).__name__}"}, status_code=503)
    if version != head:
        return JSONResponse({"detail": f"database at revision {version}, expected {head}"}, status_code=503)
    return Ready(status="ready", database="ok", revision=version)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
