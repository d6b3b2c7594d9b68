"""API benchmark (not a test): /v1/series and /v1/events on 2,000,000 scored events.

    python bench/api.py [--n 2000000] [--days 30] [--seconds 10] [--clients 16]

1. An embedded PostgreSQL (pgserver) gets the schema at head, one partition per day, and N
   synthetic events over the last D days by COPY (20 topics, 500 tickers with a skewed
   popularity, 4 sources); the per-minute, 5-minute and hourly rollups are then built by
   INSERT … SELECT … GROUP BY (the same sums the worker keeps incrementally), and the tables
   are VACUUM ANALYZEd.
2. The API runs as one uvicorn process (rate limit off); a local load generator (aiohttp, C
   clients each sending its next request when the last one returns) drives each scenario for S
   seconds: series of several shapes (one ticker or 20 topics or 50 tickers; 1-minute to 1-day
   buckets; each read from the coarsest rollup that tiles its bucket), and events filtered on
   one ticker (last 24 h, 100 per page), walking 3 cursor pages.
   It prints requests/s, latency p50/p99 and the CPU time per request of the API, Postgres and
   the load generator per scenario, then EXPLAIN (ANALYZE, BUFFERS) of each query (the 20-topic
   5-minute series also against the minute rollups, as it was read before). Server and
   load generator share this machine's cores; on a machine shared with other work, CPU per
   request is the steadier figure.

3. --mixed: C clients mixing reads (series, events), scoring (one text) and subscription writes
   (create + delete, 10 keys) while --streams SSE streams stay open; errors by kind, p50/p99 per
   kind, the API's resident memory before, at the end of, and after the load, and how long the
   first requests after the load take.

   --reuse DIR keeps the seeded database between runs; --uvicorn '--loop uvloop --http
   httptools' runs plain uvicorn with those options instead of `finsent api`; --workers N.
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
from core.events import COLUMNS  # noqa: E402
from core.pg import libpq_dsn, migrate  # noqa: E402
from finsent.services import Postgres, wait_for  # noqa: E402
from models.labels import TOPICS  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 150)
TICKERS = [f"T{i:03d}" for i in range(500)]
SOURCES = ("news", "social", "wire", "blog")
ROLLUPS = """
INSERT INTO event_rollup_minute (key_type, key, minute, n, negatives, neutrals, positives, score_sum)
SELECT key_type, key, date_trunc('minute', published_at, 'UTC'), count(*),
       count(*) FILTER (WHERE sentiment = 'negative'), count(*) FILTER (WHERE sentiment = 'neutral'),
       count(*) FILTER (WHERE sentiment = 'positive'), sum(score)
FROM (SELECT 'topic' AS key_type, topic AS key, published_at, sentiment, score FROM scored_event
      UNION ALL SELECT 'ticker', unnest(tickers), published_at, sentiment, score FROM scored_event
      UNION ALL SELECT 'source', source, published_at, sentiment, score FROM scored_event) k
GROUP BY 1, 2, 3"""
COARSE = {"event_rollup_5m": "date_bin('5 minutes', minute, TIMESTAMPTZ '1970-01-01 00:00:00+00')",
          "event_rollup_hour": "date_trunc('hour', minute, 'UTC')"}  # as migration 0004 fills them


def rows(n: int, days: int, now: datetime, seed: int = 5):
    rng = np.random.default_rng(seed)
    secs = rng.uniform(0, days * 86400, n)
    topic = rng.integers(0, len(TOPICS), n)
    ticker = np.minimum(rng.zipf(1.3, n) - 1, len(TICKERS) - 1)
    has_ticker = rng.random(n) < 0.6
    sent = rng.choice(3, n, p=[0.25, 0.5, 0.25])
    probs = ((0.8, 0.15, 0.05), (0.1, 0.8, 0.1), (0.05, 0.15, 0.8))
    for i in range(n):
        at = now - timedelta(seconds=float(secs[i]))
        pn, pu, pp = probs[sent[i]]
        yield (SOURCES[i % 4], f"b{i}", at, f"synthetic headline {i} on {TOPICS[topic[i]]}", None, None, "en",
               [TICKERS[ticker[i]]] if has_ticker[i] else [], at, at, TOPICS[topic[i]], 0.9,
               ("negative", "neutral", "positive")[sent[i]], pn, pu, pp, pp - pn, "bench-v1", False)


def seed(dsn: str, n: int, days: int, now: datetime) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        for d in range(days + 2):
            c.execute("SELECT finsent_ensure_day_partition(%s)", (now.date() - timedelta(days=d),))
        t0 = time.perf_counter()
        with c.cursor().copy(f"COPY scored_event ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows(n, days, now):
                copy.write_row(row)
        console.print(f"COPY {n:,} rows: {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        c.execute(ROLLUPS)
        for table, bucket in COARSE.items():
            c.execute(f"""INSERT INTO {table} (key_type, key, bucket, n, negatives, neutrals, positives, score_sum)
                SELECT key_type, key, {bucket}, sum(n), sum(negatives), sum(neutrals), sum(positives), sum(score_sum)
                FROM event_rollup_minute GROUP BY 1, 2, 3""")
        c.execute("VACUUM ANALYZE")  # sets the visibility map, as autovacuum does in steady state
        count = c.execute("SELECT count(*) FROM event_rollup_minute").fetchone()[0]
        console.print(f"rollups ({count:,} rows) + VACUUM ANALYZE: {time.perf_counter() - t0:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(url: str, port: int, log: Path, workers: int = 1, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """`finsent api` as deployed (api.cli.serve: settings from the environment), or plain
    `uvicorn --factory` with extra options when `extra` is given (to compare loops/parsers)."""
    env = {**os.environ, "DATABASE_URL": url, "FINSENT_API_PORT": str(port), "FINSENT_API_RATE_LIMIT_PER_S": "0",
           "FINSENT_API_MAX_STREAMS_PER_CLIENT": "100000"}  # one load generator is every client here
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


def scenarios(now: datetime) -> dict:
    hot = TICKERS[:20]
    day = {"start": (now - timedelta(hours=24)).isoformat(), "end": now.isoformat()}

    def series(key_type, keys, span, bucket):
        return lambda r: ("/v1/series", {"key_type": key_type, "bucket": bucket, "key": r.choice(hot) if keys == "hot"
                                         else keys, "start": (now - span).isoformat(), "end": now.isoformat()}, 0)
    return {**{name: series(*shape) for name, shape in SHAPES.items()},
            "events: 1 ticker, 24 h, 3 pages": lambda r: ("/v1/events", {"ticker": r.choice(hot), "limit": 100, **day},
                                                          2)}


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
    ap.add_argument("--mixed", action="store_true", help="run the mixed load (reads, scoring, writes, open streams)")
    ap.add_argument("--streams", type=int, default=1000, help="open SSE streams during --mixed")
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
        else:
            now = datetime.now(timezone.utc)
            import psycopg

            with psycopg.connect(libpq_dsn(pg.url.replace("/bench?", "/postgres?")), autocommit=True) as c:
                c.execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")
                c.execute("CREATE DATABASE bench")
            migrate(url)
            seed(libpq_dsn(url), args.n, args.days, now)
            stamp.write_text(f"{wanted}\n{now.isoformat()}")
        port = free_port()
        api = start_api(url, port, base / "api.log", args.workers, tuple(args.uvicorn.split()))
        server = f"uvicorn {args.uvicorn}" if args.uvicorn else "finsent api"
        meter = CpuMeter(api.pid, base / "data")
        if args.mixed:
            run_mixed(url, port, api.pid, args, now)
            return
        table = Table("scenario", "requests", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req: API",
                      "Postgres", "client",
                      title=f"{args.n:,} events over {args.days} days; {args.clients} clients × {args.seconds:.0f} s; "
                            f"{server}, {args.workers} worker(s)")
        for name, make in scenarios(now).items():
            if args.only not in name:
                continue
            asyncio.run(drive(f"http://127.0.0.1:{port}", make, 1.0, args.clients))  # warm-up
            before = meter.sample()
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
