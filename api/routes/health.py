"""Liveness, readiness (Postgres, and the read replica when configured, reachable and migrated to
head) and Prometheus metrics (with the replica's lag, api/replica.py)."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import queries as q
from api.deps import PoolDep, Reader
from api.schemas import Health, Message, Ready

router = APIRouter(tags=["health"])


# HEAD too: load balancers and uptime probes often check with HEAD (answered without a body)
@router.api_route("/health", methods=["GET", "HEAD"], response_model=Health, summary="Liveness: the process answers")
async def health(request: Request) -> Health:
    return Health(status="ok", model=request.app.state.scorer.state())


@router.api_route("/ready", methods=["GET", "HEAD"], response_model=Ready, summary="Readiness: Postgres reachable, a pooled connection free "
            "within a second, migrations at head; the same for the read replica when one is configured",
            responses={503: {"model": Message}})
async def ready(request: Request, pool: PoolDep):
    head = request.app.state.alembic_head
    failed = await check(pool, head, "database")
    if failed is not None:
        return failed
    read_pool, lag = request.app.state.read_pool, request.app.state.replica_lag
    if read_pool is pool:
        return Ready(status="ready", database="ok", revision=head, replica="none")
    failed = await check(read_pool, head, "read replica")
    if failed is not None:
        return failed
    return Ready(status="ready", database="ok", revision=head, replica="ok",
                 replica_lag_s=lag.seconds if lag is not None else None)


async def check(pool, head: str, what: str) -> JSONResponse | None:
    """None when `pool` gives a connection within a second and its schema is at `head`; else the 503."""
    try:
        async with pool.acquire(timeout=1) as conn:
            version = await conn.fetchval(q.ALEMBIC_VERSION, timeout=2)
    except TimeoutError:
        exhausted = pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0
        # not exhausted: connections still being opened (a cold pool under a burst) or a server that does not answer
        detail = (f"{what} busy: every pooled connection is in use" if exhausted
                  else f"{what} busy or unreachable: no connection within 1 s")
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return JSONResponse({"detail": f"{what} unreachable"}, status_code=503)
    if version != head:
        return JSONResponse({"detail": f"{what} at revision {version}, expected {head}"}, status_code=503)
    return None


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(_: Reader) -> Response:
    """Open like every read (FINSENT_API_READS_OPEN); with reads closed it needs a `read` key
    (Prometheus: `authorization: {credentials_file: ...}`)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
