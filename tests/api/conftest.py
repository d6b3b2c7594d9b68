"""API test fixtures: one migrated database per module (tests in a module share it and use
distinct keys/tickers), the app served by a real uvicorn in a thread (real HTTP, SSE and
lifespan), helpers to seed scored events through the worker's write path
(core.events.store_scored), to write alerts as the worker does, and to mint API keys."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import psycopg
import pytest

from finsent.services import wait_for
import uvicorn

from api import keys
from api.main import create_app
from api.server import uvicorn_config
from core.events import store_scored
from core.pg import libpq_dsn
from core.settings import Settings
from tests.conftest import new_database  # noqa: F401 - the API tests import it from here


@pytest.fixture(scope="module")
def db_url(postgres) -> str:
    return new_database(postgres, "a")


@pytest.fixture(scope="module")
def dsn(db_url) -> str:
    return libpq_dsn(db_url)


def api_settings(db_url: str, **overrides) -> Settings:
    values = dict(DATABASE_URL=db_url, webhook_allow_private=True, webhook_allow_http=True, webhook_timeout_s=2.0,
                  webhook_retry_base_s=0.05, webhook_retry_max_s=0.2, webhook_max_failures=4, sse_keepalive_s=0.5,
                  api_rate_limit_per_s=0)  # rate limits: their own test
    return Settings(**{**values, **overrides})


class ApiServer:
    """create_app(settings) under uvicorn in a daemon thread on a free port."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __enter__(self) -> ApiServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn_config(create_app(self.settings), self.settings, log_level="warning",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "uvicorn start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=30)


@pytest.fixture(scope="module")
def api(db_url):
    with ApiServer(api_settings(db_url)) as server:
        yield server


@pytest.fixture(scope="module")
def client(api):
    with api.client() as c:
        yield c


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    return wait_for(predicate, timeout, interval, what)


def run(coro):
    return asyncio.run(coro)


async def _with_conn(dsn: str, fn):
    conn = await asyncpg.connect(dsn)
    try:
        return await fn(conn)
    finally:
        await conn.close()


def make_key(dsn: str, *scopes: str, name: str = "test") -> str:
    return run(_with_conn(dsn, lambda c: keys.create(c, name=name, scopes=list(scopes))))[1]


NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


def event(i: int, *, source: str = "news", topic: str = "macro", tickers=("ACME",), sentiment: str = "neutral",
          at: datetime | None = None, text: str | None = None, score: float | None = None) -> tuple:
    """One row in core.events.COLUMNS order."""
    at = at or NOW - timedelta(minutes=i % 600, seconds=i % 60)
    p = {"negative": (0.8, 0.1, 0.1), "neutral": (0.1, 0.8, 0.1), "positive": (0.1, 0.1, 0.8)}[sentiment]
    return (source, f"e{i}", at, text or f"headline number {i} about {topic}", None, None, "en", list(tickers), at, at,
            topic, 0.9, sentiment, *p, p[2] - p[0] if score is None else score, "v-test", False)


def tag_entities(rows: list[tuple]) -> list[tuple]:
    """Entity rows as the worker writes them for an event's feed tags (core.events.ENTITY_COLUMNS)."""
    return [(r[0], r[1], r[2], t, None, 0.8, r[12], r[16], "item" if len(r[7]) == 1 else "item_shared", "[]",
             ["tag"], True, "test") for r in rows for t in r[7]]


def seed(dsn: str, rows: list[tuple], entities: list[tuple] | None = None) -> set:
    """Rows through the worker's write path, with entity rows for their tickers unless `entities` are given."""
    ents = tag_entities(rows) if entities is None else entities

    async def go(conn):
        async with conn.transaction():
            return await store_scored(conn, rows, ents)
    return run(_with_conn(dsn, go))


_windows = itertools.count()


def insert_alert(dsn: str, *, key_type: str = "ticker", key: str = "ACME", severity: str = "high",
                 event: str = "opened", samples=("news/e1",), alert_id: int | None = None,
                 revision: int = 0) -> tuple[int, int]:
    """An alert row and its alert_event, as the worker writes them: (alert id, alert_event id)."""
    ws = NOW - timedelta(minutes=2, seconds=next(_windows))  # (key_type, key, window_start) is unique
    with psycopg.connect(dsn, autocommit=True) as c:
        if alert_id is None:
            alert_id = c.execute(
                "INSERT INTO alert (key_type, key, window_start, window_end, n, negatives, baseline_rate, baseline_n, "
                "z, p_value, severity, sample_event_ids, revision) VALUES (%s,%s,%s,%s,40,30,0.2,10,8.5,1e-9,%s,%s,%s) "
                "RETURNING id", (key_type, key, ws, NOW, severity, list(samples), revision)).fetchone()[0]
        payload = {"alert_id": alert_id, "event": event, "revision": revision, "state":
                   "resolved" if event == "resolved" else "open", "key_type": key_type, "key": key,
                   "window_start": ws.isoformat(), "window_end": NOW.isoformat(), "n": 40, "negatives": 30,
                   "baseline_rate": 0.2, "baseline_n": 10, "z": 8.5, "p_value": 1e-9, "severity": severity,
                   "sample_event_ids": list(samples), "opened_at": NOW.isoformat(), "resolved_at": None}
        event_id = c.execute(
            "INSERT INTO alert_event (alert_id, event, revision, key_type, key, severity, payload) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (alert_id, event, revision, key_type, key, severity, json.dumps(payload))).fetchone()[0]
    return alert_id, event_id


def sql(dsn: str, query: str, *args):
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(query, args)
        return cur.fetchall() if cur.description else None
