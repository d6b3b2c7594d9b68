"""The FastAPI app factory. The lifespan opens one asyncpg pool (sessions in UTC) and starts
the alert hub (LISTEN), the webhook deliverer and the scoring batcher; it closes them in
reverse. Nothing happens at import time.

    from api.main import create_app; app = create_app(settings)
    uvicorn --factory api.main:create_app      # settings from the environment
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
from contextlib import asynccontextmanager

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api.delivery import Deliverer
from api.deps import Cursors
from api.entities import Entities
from api.heap import freeze_long_lived, unfreeze
from api.limits import BodyLimit, RateLimitMiddleware, SendDeadline, StreamSlots
from api.live import AlertHub
from api.metrics import MetricsMiddleware
from api.routes import (alerts, entities, events, feedback, health, movers, page, score, series, stories, stream,
                        subscriptions)
from api.schemas import Message
from api.replica import ReplicaLag
from api.scoring import ScoringBatcher
from api.series_cache import SeriesCache
from core.logs import get
from core.pg import alembic_config, sync_url
from core.settings import Settings, get_settings

log = get("api")
DESCRIPTION = """History, aggregates and alerts of finsent's scored news and posts; alert
subscriptions with signed webhooks; a live alert stream; ad-hoc scoring; analysts' feedback.

Authentication: an API key (`finsent apikey create`) in `X-API-Key` or `Authorization: Bearer`.
Reads may be open (FINSENT_API_READS_OPEN); writes always need a key with the right scope
(`subscribe`, `feedback`; `admin` implies all). `/health`, `/ready`, `/docs` and `/openapi.json`
are always open; `/metrics` follows the read policy. Errors are JSON: `{"detail": ...}`.

Limits: 429 with `Retry-After` past the per-key request rate or the open-stream caps; 413 for a
body over the size limit; 503 with `Retry-After` while the database is busy."""


ERRORS = {400: {"model": Message, "description": "Bad request (e.g. a time range or cursor that cannot be used)"},
          401: {"model": Message, "description": "Missing, unknown or revoked API key"},
          403: {"model": Message, "description": "The API key lacks the needed scope"},
          413: {"model": Message, "description": "The request body is larger than the limit"},
          429: {"model": Message, "description": "Rate limit reached: retry after `Retry-After` seconds"},
          503: {"model": Message, "description": "The database is unavailable or busy (see `Retry-After`)"}}


def alembic_head(settings: Settings) -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(sync_url(settings.database_url))).get_current_head()


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default sends `SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL` after every use, a round trip per request; the API never
    leaves session state on a pooled connection (no SET, LISTEN, advisory lock or open cursor:
    the hub LISTENs on a connection of its own), and an open transaction is still rolled back
    by asyncpg before this is called."""


# asyncpg prepares every statement, and after five runs Postgres may switch a prepared statement
# to its generic plan: for an events page over daily partitions that plan cost 3.3 ms against
# 1.3 ms for a plan made with the actual time range and filters (bench/api.py; series: no
# difference). Planning each time is the cheaper side here.
POOL_PLANS = "force_custom_plan"


def server_settings(s: Settings) -> dict[str, str]:
    """Bounded waits on the server side: a statement, a lock wait, an idle open transaction."""
    ms = str(int(s.api_statement_timeout_s * 1000))
    return {"timezone": "UTC", "application_name": "finsent-api", "plan_cache_mode": POOL_PLANS,
            "statement_timeout": ms, "lock_timeout": ms, "idle_in_transaction_session_timeout": ms}


def series_cache_bytes(s: Settings) -> int:
    """FINSENT_API_SERIES_CACHE_MB (default 64; 0 turns the series cache off): Settings.api_series_cache_mb
    where the settings have it, else the environment variable."""
    mb = getattr(s, "api_series_cache_mb", None)
    if mb is None:
        try:
            mb = float(os.environ.get("FINSENT_API_SERIES_CACHE_MB", "64"))
        except ValueError:
            mb = 64.0
    return max(0, int(mb * (1 << 20)))


@asynccontextmanager
async def lifespan(app: FastAPI):
    s: Settings = app.state.settings
    pool = await open_pool(s, s.asyncpg_dsn)
    app.state.pool = pool
    # reads (events, series, movers, alerts, entities, stories) on the replica when one is configured
    app.state.read_pool = read_pool = await open_pool(s, read_dsn(s)) if read_dsn(s) else pool
    app.state.replica_lag = lag = ReplicaLag(read_pool) if read_pool is not pool else None
    app.state.hub = hub = AlertHub(pool, s.asyncpg_dsn, s.api_revocation_check_s)
    app.state.deliverer = deliverer = Deliverer(pool, s, hub)
    app.state.scorer = scorer = ScoringBatcher(s)
    app.state.entities = Entities(s)
    # the cache LISTENs on the primary (a standby cannot) and reads where the reads go
    app.state.series_cache = series_cache = SeriesCache(read_pool, s.asyncpg_dsn, max_bytes=series_cache_bytes(s),
                                                        acquire_timeout_s=s.api_pool_timeout_s,
                                                        settle_s=lag.settle_s if lag else None)
    series_cache.start()
    if lag is not None:
        lag.start()
    hub.start()
    deliverer.start()
    log.info("api.started", host=s.api_host, port=s.api_port)
    freeze_long_lived()  # start-up's objects out of the collector's full passes (api/heap.py)
    try:
        yield
    finally:
        unfreeze()
        await scorer.stop()
        await deliverer.stop()
        await hub.stop()
        await series_cache.stop()
        if lag is not None:
            await lag.stop()
        for p in {id(pool): pool, id(read_pool): read_pool}.values():
            try:  # close waits for connections in use; a stuck one must not hold up the shutdown
                await asyncio.wait_for(p.close(), 5)
            except TimeoutError:
                p.terminate()


async def open_pool(s: Settings, dsn: str) -> asyncpg.Pool:
    # min_size=0: the API starts (and /health answers) while Postgres is still down; /ready tells.
    # command_timeout: the client-side bound, should the server's statement_timeout not answer.
    return await asyncpg.create_pool(dsn, min_size=0, max_size=s.api_pool_size, init=init_connection,
                                     reset=keep_session, server_settings=server_settings(s), timeout=10,
                                     command_timeout=s.api_statement_timeout_s + 5)


def read_dsn(s: Settings) -> str | None:
    """FINSENT_API_READ_URL as an asyncpg DSN (either spelling of the scheme), None when unset."""
    url = getattr(s, "api_read_url", None)
    return url.replace("postgresql+asyncpg://", "postgresql://", 1) if url else None


def install_error_handlers(app: FastAPI) -> None:
    """Bad input the validators could not see becomes a 400; anything else a bare 500/503
    with no stack trace (it is logged)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": jsonable_encoder(printable(exc.errors()))}, status_code=422)

    @app.exception_handler(asyncpg.DataError)
    async def data_error(request: Request, exc: asyncpg.DataError):
        return JSONResponse({"detail": "invalid input: a value the database cannot hold (a NUL character, a "
                                       "number or time out of range)"}, status_code=400)

    @app.exception_handler(TimeoutError)
    @app.exception_handler(asyncpg.QueryCanceledError)
    @app.exception_handler(asyncpg.LockNotAvailableError)
    @app.exception_handler(asyncpg.TooManyConnectionsError)
    async def busy(request: Request, exc: Exception):
        log.warning("api.database_busy", error=str(exc), path=request.url.path)
        return JSONResponse({"detail": "database busy: retry shortly"}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(OSError)
    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)
    async def unavailable(request: Request, exc: Exception):
        replica = getattr(request.state, "on_replica", False)
        log.warning("api.database_unavailable", error=str(exc), path=request.url.path, replica=replica)
        if replica:
            return JSONResponse({"detail": "read replica unavailable: retry shortly (writes are not affected)"},
                                status_code=503, headers={"Retry-After": "2"})
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("api.error", path=request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def printable(value):
    """A 422 echoes the input: make sure it can be rendered as JSON (no NaN, no lone surrogate,
    no bytes that are not UTF-8)."""
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class RelativeRedirects:
    """Redirects name the path only. Starlette answers '/v1/events/' with a redirect to
    '/v1/events' on the host the client's Host header names, so a crafted Host became the
    redirect's target (and a cache in front could keep it for everyone)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        host = dict(scope["headers"]).get(b"host")

        async def relative(message):
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"location" and b"://" in value:
                        url = httpx.URL(value.decode("latin-1"))
                        if url.netloc == host:  # a redirect to this API itself
                            value = url.raw_path or b"/"
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)
        await self.app(scope, receive, relative)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="finsent API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.alembic_head = alembic_head(settings)
    secret = settings.api_cursor_secret
    app.state.cursors = Cursors(secret.get_secret_value().encode() if secret else secrets.token_bytes(32))
    app.state.stream_slots = StreamSlots(settings.api_max_streams_per_key, settings.api_max_streams_per_client)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes, timeout_s=settings.api_body_timeout_s)
    app.add_middleware(RateLimitMiddleware, rate=settings.api_rate_limit_per_s, burst=settings.api_rate_burst)
    app.add_middleware(MetricsMiddleware)
    if settings.api_cors_origins:  # off unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.api_cors_origins,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"])
    app.add_middleware(RelativeRedirects)
    app.add_middleware(SendDeadline, timeout_s=settings.api_send_timeout_s)  # outermost: it ends the answer of a client that stopped reading
    install_error_handlers(app)
    app.include_router(health.router)
    for module in (events, series, movers, alerts, entities, stories, subscriptions, stream, score, feedback):
        app.include_router(module.router, responses=ERRORS)
    app.include_router(page.router)  # the live web page at / (api/web/, owned by the dashboards work)
    return app
