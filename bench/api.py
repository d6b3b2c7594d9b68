"""API benchmark (not a test): /v1/series and /v1/events on 2,000,000 (or --n) scored events.

    python bench/api.py [--n 2000000] [--days 30] [--seconds 10] [--clients 16] [--reuse DIR]
                        [--cache-mb 0] [--live-rate 200] [--sliding 24] [--only series] [--mixed]
    python bench/api.py --days 90 --past-retention --cache-mb 0   # series before raw retention (issue 22)

1. An embedded PostgreSQL (pgserver) gets the schema at head, one partition per day, and N
   synthetic events over the last D days, written the way the worker writes them: chunks of
   250,000 rows generated in SQL (generate_series into the worker's staging tables; 20 topics,
   500 tickers with a skewed popularity on 60 % of rows, 4 sources, feed-tag entity rows), each
   stored by the worker's own statement (core.events.INSERT_FROM_STAGE: the events, their
   entity rows, and the minute, 5-minute and hourly rollups from the rows really inserted);
   then VACUUM ANALYZE. 2 M events take about 2 minutes, 20 M about 30 (16 GB).
2. The API runs as one process (`finsent api`, rate limit off; series cache FINSENT_API_SERIES_
   CACHE_MB from --cache-mb, 0 = every series request reads Postgres); a local load generator
   (aiohttp, C clients each sending its next request when the last one returns) drives each
   scenario for S seconds: series of several shapes (one ticker or 20 topics or 50 tickers;
   1-minute to 1-day buckets; each read from the coarsest rollup that tiles its bucket), and
   events filtered on one ticker (last 24 h, 100 per page), walking 3 cursor pages. With
   --sliding H every series request's window ends at a random second of the last H hours and the
   50-ticker shape draws its tickers at random among 150: no two requests alike, as outside
   clients send them (the answers cache misses; the rollup pieces under them are reused). With
   --live-rate R a writer commits a batch of R/4 events every 0.25 s into the newest 5 minutes
   of every span read, through the worker's write path (each commit empties the cached answers
   it touches). It prints requests/s, latency p50/p99 and the CPU time per request of the API,
   Postgres and the load generator per scenario, then EXPLAIN (ANALYZE, BUFFERS) of each query
   (the 20-topic 5-minute series also against the minute rollups). Server and load generator
   share this machine's cores; on a machine shared with other work, CPU per request is the
   steadier figure.
3. --mixed: C clients mixing reads (series, events), scoring (one text) and subscription writes
   (create + delete, 10 keys) while --streams SSE streams stay open; errors by kind, p50/p99 per
   kind, the API's resident memory before, at the end of, and after the load, and how long the
   first request after the load takes.

4. --past-retention: the raw days older than 30 are dropped (core.history.drop_day, as upkeep
   does without an archive), the API runs with FINSENT_RETENTION_RAW_DAYS=30, and the series
   scenarios are spans before that: hourly, daily, 15-minute (from the 5-minute rollup) and
   1-minute (minute rollups kept 90 days) buckets; each shape's `resolution` is checked and
   printed, and an events request 45 days back must be a 410.

   --reuse DIR keeps the seeded database between runs (migrated to head on reuse); --uvicorn
   '--loop uvloop --http httptools' runs plain uvicorn with those options instead of
   `finsent api`; --workers N.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api import queries as q  # noqa: E402
from api.crud import ceil_time, floor_time  # noqa: E402
from core.events import (COLUMNS, CREATE_ENTITY_STAGE, CREATE_STAGE, ENTITY_COLUMNS,  # noqa: E402
                         INSERT_FROM_STAGE)
from core.pg import libpq_dsn, migrate  # noqa: E402
from finsent.services import Postgres, wait_for  # noqa: E402
from models.labels import TOPICS  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 150)
TICKERS = [f"T{i:03d}" for i in range(500)]
SOURCES = ("news", "social", "wire", "blog")
# One chunk of synthetic events, generated in SQL (no Python per row) into the worker's own
# staging tables; then the worker's statement (core.events.INSERT_FROM_STAGE) stores them with
# their entity rows and upserts the minute, 5-minute and hourly rollups from the rows really
# inserted, as for a live batch. %(first)s: first row number, %(rows)s: rows, %(oldest)s: the
# chunk's oldest time (epoch s), %(span)s: seconds it spans (rows spread evenly, newest last, as a
# live feed writes them). 20 topics, 500 tickers with a skewed popularity (index 500^u - 1) on
# 60 % of rows, 4 sources, sentiment 25/50/25 %.
STAGE_CHUNK = f"""
INSERT INTO finsent_stage ({', '.join(COLUMNS)})
SELECT (ARRAY['news','social','wire','blog'])[i %% 4 + 1], 'b' || i, at,
       'synthetic headline ' || i || ' on ' || topic, NULL, NULL, 'en',
       CASE WHEN random() < 0.6 THEN ARRAY['T' || lpad((floor(power(500, random())) - 1)::int::text, 3, '0')]
            ELSE ARRAY[]::varchar[] END,
       at, at, topic, 0.9, (ARRAY['negative','neutral','positive'])[s + 1],
       (ARRAY[0.8, 0.1, 0.05])[s + 1], (ARRAY[0.15, 0.8, 0.15])[s + 1], (ARRAY[0.05, 0.1, 0.8])[s + 1],
       (ARRAY[-0.75, 0.0, 0.75])[s + 1], 'bench-v1', false
FROM (SELECT i, to_timestamp(%(oldest)s::float8 + (i - %(first)s + random()) * %(span)s::float8 / %(rows)s) AS at,
             (ARRAY[{', '.join(repr(t) for t in TOPICS)}])[floor(random() * {len(TOPICS)})::int + 1] AS topic,
             CASE WHEN r < 0.25 THEN 0 WHEN r < 0.75 THEN 1 ELSE 2 END AS s
      FROM (SELECT i, random() AS r FROM generate_series(%(first)s::bigint, %(first)s::bigint + %(rows)s - 1) AS i) g
     ) x"""
# the feed tags' entity rows, as the worker writes a tag it could not place in the text
STAGE_ENTITIES = f"""
INSERT INTO finsent_entity_stage ({', '.join(ENTITY_COLUMNS)})
SELECT source, id, published_at, t, NULL, 1.0, sentiment, score, 'item', '[]', '{{tag}}', true, 'bench'
FROM finsent_stage, unnest(tickers) AS t"""


def seed(dsn: str, n: int, days: int, now: datetime, chunk: int = 250_000) -> None:
    """N events over the last D days, oldest first, in chunks through the worker's write path."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        for d in range(days + 2):
            c.execute("SELECT finsent_ensure_day_partition(%s)", (now.date() - timedelta(days=d),))
        c.execute(CREATE_STAGE)
        c.execute(CREATE_ENTITY_STAGE)
        c.execute("SELECT setseed(0.5)")
        t0, span, oldest = time.perf_counter(), days * 86400, now.timestamp() - days * 86400
        for first in range(0, n, chunk):
            rows = min(chunk, n - first)
            with c.transaction():
                c.execute("TRUNCATE finsent_stage, finsent_entity_stage")
                c.execute(STAGE_CHUNK, {"first": first, "rows": rows, "oldest": oldest + span * first / n,
                                        "span": span * rows / n})
                c.execute(STAGE_ENTITIES)
                c.execute(INSERT_FROM_STAGE)
            if (first // chunk) % 8 == 7:
                console.print(f"  {first + rows:,} rows stored, {time.perf_counter() - t0:.0f} s")
        console.print(f"{n:,} rows through the worker's write path: {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        c.execute("VACUUM ANALYZE")  # sets the visibility map, as autovacuum does in steady state
        count = c.execute("SELECT count(*) FROM event_rollup_minute").fetchone()[0]
        console.print(f"VACUUM ANALYZE ({count:,} minute rollup rows): {time.perf_counter() - t0:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(url: str, port: int, log: Path, workers: int = 1, extra: tuple[str, ...] = (),
              cache_mb: float = 64) -> subprocess.Popen:
    """`finsent api` as deployed (api.cli.serve: settings from the environment), or plain
    `uvicorn --factory` with extra options when `extra` is given (to compare loops/parsers)."""
    env = {**os.environ, "DATABASE_URL": url, "FINSENT_API_PORT": str(port), "FINSENT_API_RATE_LIMIT_PER_S": "0",
           "FINSENT_API_MAX_STREAMS_PER_CLIENT": "100000",  # one load generator is every client here
           "FINSENT_API_SERIES_CACHE_MB": str(cache_mb)}
    if extra:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(port),
               "--log-level", "warning", "--no-access-log", "--workers", str(workers), *extra]
    else:
        cmd = [sys.executable, "-m", "finsent.cli", "api"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    import httpx

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, 60, 0.2, "API ready")
    return proc


def cpu_seconds(match) -> float:
    """CPU time (user + system) of the processes `match(pid, ppid, pgrp)` selects, from /proc."""
    ticks = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if match(int(d), int(fields[1]), int(fields[2])):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by the API (its process group), Postgres (postmaster and backends) and
    this load generator: a per-request cost that contention on a shared machine barely moves,
    unlike requests/s and latency."""

    def __init__(self, api_pgrp: int, pg_dir: Path):
        self.api_pgrp, self.postmaster = api_pgrp, int((pg_dir / "postmaster.pid").read_text().split()[0])

    def sample(self) -> tuple[float, float, float]:
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        return (cpu_seconds(lambda pid, ppid, pgrp: pgrp == self.api_pgrp),
                cpu_seconds(lambda pid, ppid, pgrp: self.postmaster in (pid, ppid)), me.ru_utime + me.ru_stime)


SHAPES = {  # name: (key_type, keys or a choice among them, span, bucket)
    "series: 1 ticker, 7 d, 1 h": ("ticker", "hot", timedelta(days=7), "1h"),
    "series: 20 topics, 24 h, 5 min": ("topic", list(TOPICS), timedelta(hours=24), "5m"),
    "series: 20 topics, 7 d, 1 h": ("topic", list(TOPICS), timedelta(days=7), "1h"),
    "series: 50 tickers, 24 h, 15 min": ("ticker", TICKERS[:50], timedelta(hours=24), "15m"),
    "series: 1 ticker, 30 d, 1 d": ("ticker", "hot", timedelta(days=30), "1d"),
    "series: 1 ticker, 6 h, 1 min": ("ticker", "hot", timedelta(hours=6), "1m"),
}
STEPS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
# --past-retention (issue 22): spans before raw retention (30 days), answered from the rollups;
# name: (key_type, keys, start days ago, end days ago, bucket, the resolution the API must name)
PAST_SHAPES = {
    "past: 1 ticker, 90→30 d ago, 1 h": ("ticker", "hot", 90, 30, "1h", "1h"),
    "past: 20 topics, 90 d, 1 d": ("topic", list(TOPICS), 90, 0, "1d", "1h"),
    "past: 50 tickers, 60→59 d ago, 15 min": ("ticker", TICKERS[:50], 60, 59, "15m", "5m"),
    "past: 1 ticker, 45→44 d ago, 1 min": ("ticker", "hot", 45, 44, "1m", "1m"),
}
RAW_DAYS = 30


def past_scenarios(now: datetime) -> dict:
    hot = TICKERS[:20]

    def series(key_type, keys, ago, until, bucket, _resolution):
        return lambda r: ("/v1/series", {"key_type": key_type, "bucket": bucket, "key": r.choice(hot) if keys == "hot"
                                         else keys, "start": (now - timedelta(days=ago)).isoformat(),
                                         "end": (now - timedelta(days=until)).isoformat()}, 0)
    return {name: series(*shape) for name, shape in PAST_SHAPES.items()}


def drop_raw_past_retention(dsn: str, now: datetime) -> int:
    """The raw days before RAW_DAYS dropped as upkeep does (core.history.drop_day, no archive in
    the bench: the rollups stay), so the series really run where raw history is gone."""
    from core import history

    async def go():
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            days = [d for d in await history.day_partitions(conn) if d < now.date() - timedelta(days=RAW_DAYS)]
            for d in sorted(days):
                await history.drop_day(conn, d, None, require_archive=False)
            return len(days)
        finally:
            await conn.close()
    return asyncio.run(go())


def check_past(port: int, now: datetime) -> None:
    """Each past shape names the resolution it must; events before raw retention are a 410."""
    import httpx

    for name, (kt, keys, ago, until, bucket, resolution) in PAST_SHAPES.items():
        params = {"key_type": kt, "bucket": bucket, "key": TICKERS[0] if keys == "hot" else keys,
                  "start": (now - timedelta(days=ago)).isoformat(), "end": (now - timedelta(days=until)).isoformat()}
        r = httpx.get(f"http://127.0.0.1:{port}/v1/series", params=params, timeout=30)
        got = r.json().get("resolution") if r.status_code == 200 else r.text[:200]
        total = sum(sum(x["n"]) for x in r.json()["series"]) if r.status_code == 200 else 0
        console.print(f"{name}: {r.status_code}, resolution {got} (expected {resolution}), {total:,} events counted")
    r = httpx.get(f"http://127.0.0.1:{port}/v1/events", timeout=30,
                  params={"start": (now - timedelta(days=45)).isoformat(), "end": (now - timedelta(days=44)).isoformat()})
    console.print(f"events 45 days ago: {r.status_code} {r.json()['detail'][:160]}")


def scenarios(now: datetime, sliding_h: float = 0) -> dict:
    """Each shape as a dashboard asks it (fixed window ending at the seeded `now`), or with
    `sliding_h` as outside clients ask: every request's window ends at a random second within the
    last `sliding_h` hours and a multi-ticker shape draws its tickers at random among 150, so no
    two requests are alike and no whole answer is reused (the rollup pieces are)."""
    hot = TICKERS[:20]
    day = {"start": (now - timedelta(hours=24)).isoformat(), "end": now.isoformat()}

    def keys_for(r, keys):
        if keys == "hot":
            return r.choice(hot)
        if sliding_h and keys[0] in TICKERS:
            return r.sample(TICKERS[:150], len(keys))
        return keys

    def series(key_type, keys, span, bucket):
        def make(r):
            end = now - timedelta(seconds=r.randrange(int(sliding_h * 3600))) if sliding_h else now
            return ("/v1/series", {"key_type": key_type, "bucket": bucket, "key": keys_for(r, keys),
                                   "start": (end - span).isoformat(), "end": end.isoformat()}, 0)
        return make
    return {**{name: series(*shape) for name, shape in SHAPES.items()},
            "events: 1 ticker, 24 h, 3 pages": lambda r: ("/v1/events", {"ticker": r.choice(hot), "limit": 100, **day},
                                                          2)}


class LiveWriter:
    """A worker's stream of writes during a scenario: every 0.25 s a batch of `rate`/4 events,
    dated within the 5 minutes before the seeded `now` (the newest buckets of every series the
    scenarios read), stored through the worker's write path (core.events.store_scored) in its
    own thread; each commit NOTIFYs the API, which drops the cached series it touches."""

    def __init__(self, dsn: str, rate: float, now: datetime):
        import threading

        self.dsn, self.rate, self.now, self.batches = dsn, rate, now, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self):
        if self.rate > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)

    async def _run(self):
        import asyncpg

        from core.events import store_scored

        conn, rng, per_batch = await asyncpg.connect(self.dsn), random.Random(7), max(1, round(self.rate / 4))
        try:
            while not self.stop.is_set():
                t0, rows = time.perf_counter(), []
                for i in range(per_batch):
                    at = self.now - timedelta(seconds=rng.uniform(0, 300))
                    topic, s = rng.choice(TOPICS), rng.randrange(3)
                    rows.append((SOURCES[i % 4], f"live{time.time_ns()}-{i}", at, f"live headline on {topic}", None,
                                 None, "en", [rng.choice(TICKERS[:50])], at, at, topic, 0.9,
                                 ("negative", "neutral", "positive")[s], 0.3, 0.4, 0.3, 0.0, "bench-v1", False))
                async with conn.transaction():
                    await store_scored(conn, rows, [])
                self.batches += 1
                await asyncio.sleep(max(0.0, 0.25 - (time.perf_counter() - t0)))
        finally:
            await conn.close()


async def drive(base: str, make, seconds: float, clients: int) -> tuple[list[float], int]:
    """`make(rng)` gives (path, params, extra pages to walk with the returned cursor)."""
    import aiohttp

    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds

    async def client(i: int):
        nonlocal errors
        rng = random.Random(i)
        async with aiohttp.ClientSession(base) as s:
            while time.perf_counter() < deadline:
                path, params, pages = make(rng)
                for _ in range(pages + 1):
                    t0 = time.perf_counter()
                    async with s.get(path, params=[(k, v) for k, vs in params.items()
                                                   for v in (vs if isinstance(vs, list) else [vs])]) as resp:
                        raw = await resp.read()
                    latencies.append(time.perf_counter() - t0)
                    errors += resp.status != 200
                    # the load generator shares the cores: it decodes a body only for its cursor
                    cursor = orjson.loads(raw).get("next_cursor") if pages and resp.status == 200 else None
                    if not cursor:
                        break
                    params = {**params, "cursor": cursor}
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors


def rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


async def mixed(base: str, keys: list[str], seconds: float, clients: int, streams: int, now: datetime) -> dict:
    """Reads, scoring and subscription writes from `clients` loops while `streams` SSE streams are open."""
    import aiohttp

    lat: dict[str, list[float]] = {"read": [], "score": [], "write": []}
    errors: dict[str, int] = {}
    shapes = list(scenarios(now).values())
    deadline, opened = time.perf_counter() + seconds, [0]

    async def sse(s):
        try:
            async with s.get("/v1/stream/alerts") as r:
                if r.status != 200:
                    errors[f"stream {r.status}"] = errors.get(f"stream {r.status}", 0) + 1
                    return
                opened[0] += 1
                async for _ in r.content:
                    pass
        except aiohttp.ClientError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    async def timed(kind, s, method, path, **kw):
        t0 = time.perf_counter()
        try:
            async with s.request(method, path, **kw) as r:
                body = await r.read()
                ok = r.status < 300
        except aiohttp.ClientError as exc:
            body, ok, r = b"", False, None
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        lat[kind].append(time.perf_counter() - t0)
        if r is not None and not ok:
            errors[f"{kind} {r.status}"] = errors.get(f"{kind} {r.status}", 0) + 1
        return body

    async def client(i, s):
        rng, headers = random.Random(i), {"X-API-Key": keys[i % len(keys)]}
        while time.perf_counter() < deadline:
            x = rng.random()
            if x < 0.7:
                path, params, _ = rng.choice(shapes)(rng)
                await timed("read", s, "GET", path, params=[(k, v) for k, vs in params.items()
                                                            for v in (vs if isinstance(vs, list) else [vs])])
            elif x < 0.85:
                await timed("score", s, "POST", "/v1/score", json={"texts": [f"ACME shares slump {i}"]})
            else:
                body = await timed("write", s, "POST", "/v1/subscriptions", headers=headers,
                                   json={"name": f"b{i}", "delivery": "stream"})
                if body and b'"id"' in body:
                    await timed("write", s, "DELETE", f"/v1/subscriptions/{orjson.loads(body)['id']}", headers=headers)

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base, connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        tasks = [asyncio.create_task(sse(s)) for _ in range(streams)]
        wait_until = time.perf_counter() + 60
        while opened[0] + sum(v for k, v in errors.items() if k.startswith("stream")) < streams \
                and time.perf_counter() < wait_until:
            await asyncio.sleep(0.2)
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(i, s) for i in range(clients)))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"latencies": lat, "errors": errors, "streams": opened[0]}


def run_mixed(url: str, port: int, api_pid: int, args, now: datetime) -> None:
    import asyncpg
    import httpx

    from api.keys import create

    async def make_keys():
        conn = await asyncpg.connect(libpq_dsn(url))
        try:
            return [(await create(conn, name=f"bench{i}", scopes=["read", "subscribe"]))[1] for i in range(10)]
        finally:
            await conn.close()
    keys = asyncio.run(make_keys())
    base = f"http://127.0.0.1:{port}"
    httpx.post(f"{base}/v1/score", json={"texts": ["warm the model"]}, timeout=60)
    before = rss_mb(api_pid)
    out = asyncio.run(mixed(base, keys, args.seconds, args.clients, args.streams, now))
    peak = rss_mb(api_pid)
    t0 = time.perf_counter()
    ready = httpx.get(f"{base}/ready", timeout=10).status_code
    first_ms = (time.perf_counter() - t0) * 1000
    table = Table("kind", "requests", "p50 ms", "p99 ms", title=f"mixed: {args.clients} clients × {args.seconds:.0f} s "
                  f"with {out['streams']:,} of {args.streams:,} SSE streams open")
    for kind, lat in out["latencies"].items():
        ms = np.array(lat or [0]) * 1000
        table.add_row(kind, f"{len(lat):,}", f"{np.percentile(ms, 50):.1f}", f"{np.percentile(ms, 99):.1f}")
    console.print(table)
    console.print(f"errors: {out['errors'] or 'none'}; API RSS {before:.0f} MB before, {peak:.0f} MB at the end, "
                  f"{rss_mb(api_pid):.0f} MB after; first /ready after the load: {ready} in {first_ms:.0f} ms")


def series_plan(name: str, now: datetime, table_step: int | None = None) -> tuple[str, str, list]:
    """A series shape's SQL and parameters as api.crud.series sends them (`table_step` forces the
    rollup chosen for that step, e.g. 60 for the minute rollups)."""
    key_type, keys, span, bucket = SHAPES[name]
    step = timedelta(seconds=STEPS[bucket])
    start, end = floor_time(now - span, step), ceil_time(now, step)
    keys = [TICKERS[0]] if keys == "hot" else keys
    return (name, q.series_sql(table_step or STEPS[bucket]), [key_type, keys, start.timestamp(), step.total_seconds(),
                                                             start, end])


async def explain(dsn: str, now: datetime) -> list[tuple[str, str]]:
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})
    try:
        plans = [series_plan(name, now) for name in SHAPES]
        name, sql, params = series_plan("series: 20 topics, 24 h, 5 min", now, table_step=60)
        plans.append((name + ", from the minute rollups", sql, params))
        w = q.events_where(start=now - timedelta(hours=24), end=now, topics=[], tickers=[TICKERS[0]], sources=[],
                           sentiments=[], min_score=None, max_score=None, model_version=None, q=None, after=None)
        plans.append(("events: 1 ticker, page 1", *q.events_page(w, 101)))
        out = []
        for name, sql, args in plans:
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            out.append((name, "\n".join(r[0] for r in rows)))
        return out
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (with --uvicorn)")
    ap.add_argument("--uvicorn", default="", help="run plain `uvicorn --factory` with these options instead of "
                                                  "`finsent api`, e.g. '--loop asyncio --http h11'")
    ap.add_argument("--only", default="", help="run the scenarios whose name contains this")
    ap.add_argument("--reuse", type=Path, help="keep the seeded database in this directory and reuse it "
                                              "(seeded again when --n/--days differ)")
    ap.add_argument("--no-explain", action="store_true")
    ap.add_argument("--live-rate", type=float, default=0, help="events/s written during each scenario (batches "
                                                                   "every 0.25 s into the newest 5 minutes)")
    ap.add_argument("--cache-mb", type=float, default=64, help="the API's series cache (0: off, every series "
                                                                  "request reads Postgres)")
    ap.add_argument("--sliding", type=float, default=0, help="hours: each series request's window ends at a random "
                    "second within them, and multi-ticker shapes draw their tickers at random (outside clients)")
    ap.add_argument("--mixed", action="store_true", help="run the mixed load (reads, scoring, writes, open streams)")
    ap.add_argument("--streams", type=int, default=1000, help="open SSE streams during --mixed")
    ap.add_argument("--past-retention", action="store_true", help="issue 22: drop raw days older than 30 and "
                    "time series spans before them, answered from the rollups (use with --days 90)")
    args = ap.parse_args()
    if args.workers != 1 and not args.uvicorn:
        ap.error("--workers needs --uvicorn (`finsent api` runs one process)")
    if args.reuse:
        base = args.reuse.resolve()
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="finsent-bench-api-"))
    base.chmod(0o755)
    stamp, wanted = base / "seeded", f"{args.n} {args.days}"
    pg = Postgres(base / "data", database="bench").start()
    api = None
    try:
        url = pg.url
        if stamp.exists() and stamp.read_text().split("\n")[0] == wanted:
            now = datetime.fromisoformat(stamp.read_text().split("\n")[1])
            console.print(f"reusing the database seeded at {now:%Y-%m-%d %H:%M} UTC in {base}")
            migrate(url)  # to head (a no-op when it is there)
        else:
            now = datetime.now(timezone.utc)
            import psycopg

            with psycopg.connect(libpq_dsn(pg.url.replace("/bench?", "/postgres?")), autocommit=True) as c:
                c.execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")
                c.execute("CREATE DATABASE bench")
            migrate(url)
            seed(libpq_dsn(url), args.n, args.days, now)
            stamp.write_text(f"{wanted}\n{now.isoformat()}")
        if args.past_retention:
            console.print(f"raw days dropped past {RAW_DAYS} days: {drop_raw_past_retention(libpq_dsn(url), now)}")
            os.environ["FINSENT_RETENTION_RAW_DAYS"] = str(RAW_DAYS)  # the API's (minute 90, 5m 400 days: defaults)
        port = free_port()
        api = start_api(url, port, base / "api.log", args.workers, tuple(args.uvicorn.split()), args.cache_mb)
        server = f"uvicorn {args.uvicorn}" if args.uvicorn else "finsent api"
        meter = CpuMeter(api.pid, base / "data")
        if args.mixed:
            run_mixed(url, port, api.pid, args, now)
            return
        table = Table("scenario", "requests", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req: API",
                      "Postgres", "client",
                      title=f"{args.n:,} events over {args.days} days; {args.clients} clients × {args.seconds:.0f} s; "
                            f"{server}, {args.workers} worker(s), series cache "
                            f"{f'{args.cache_mb:g} MB' if args.cache_mb else 'off'}"
                            f"{f'; {args.live_rate:g} events/s written meanwhile' if args.live_rate else ''}"
                            f"{f'; windows sliding over the last {args.sliding:g} h' if args.sliding else ''}")
        if args.past_retention:
            check_past(port, now)
        for name, make in (past_scenarios(now) if args.past_retention else scenarios(now, args.sliding)).items():
            if args.only not in name:
                continue
            asyncio.run(drive(f"http://127.0.0.1:{port}", make, 1.0, args.clients))  # warm-up
            before = meter.sample()
            with LiveWriter(libpq_dsn(url), args.live_rate, now):
                lat, errors = asyncio.run(drive(f"http://127.0.0.1:{port}", make, args.seconds, args.clients))
            cpu = [(b - a) * 1000 / len(lat) for a, b in zip(before, meter.sample())]
            ms = np.array(lat) * 1000
            table.add_row(name, f"{len(lat):,}", f"{len(lat) / args.seconds:,.0f}", f"{np.percentile(ms, 50):.1f}",
                          f"{np.percentile(ms, 99):.1f}", str(errors), *(f"{c:.2f}" for c in cpu))
        console.print(table)
        console.print("targets: series p99 ≤ 50 ms and ≥ 500 req/s; events page p99 ≤ 100 ms")
        if not args.no_explain:
            for name, plan in asyncio.run(explain(libpq_dsn(url), now)):
                console.print(f"\n[bold]EXPLAIN (ANALYZE, BUFFERS) — {name}[/bold]")
                console.print(plan, highlight=False, soft_wrap=True)
    finally:
        if api is not None:
            os.killpg(api.pid, signal.SIGTERM)
            api.wait(15)
        pg.stop()
        if not args.reuse:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
