"""Every dashboard SQL query finishes in ≤ 200 ms on 2,000,000 events (48 h, ~700 a minute,
103 tickers with a few carrying most mentions) and 5,000 alerts, with the dashboard's default
time range and first-load variables (All for multi-value ones, the busiest ticker).

Seeding, once per module, took 57 s on 2 cores before stories: COPY of the 2M rows ≈ 46 s, the
rollups (one INSERT … SELECT … GROUP BY) ≈ 9 s, the entity rows (one INSERT … SELECT over the
tickers, ≈ 2.4M rows) ≈ 20–40 s, ANALYZE ≈ 2 s. With each event's story and the ≈ 1.4M `story`
rows COPY'd too it took 127 s (COPY 99 s) on the 2 cores shared with other test runs (load 3–5). On
the quiet 2 cores 162 s (COPY 121 s, bound by the client making the rows); with the COPY lines
formatted by the seed (`seed.copy_line`) and `choices`' cumulative weights summed once, 134 s
(COPY 96 s). With `-s` the seed steps and every query's time print; the slowest (a ticker's
mentions by source, read from the raw events) took ≈ 80–90 ms, the rollup series ≤ 25 ms.

    .venv/bin/python -m pytest tests/dashboards/test_sql_perf.py -q -s
"""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest

from core.pg import libpq_dsn
from dashboards.macros import TimeRange, expand
from tests.dashboards.conftest import Query, sql_queries, variable_values
from tests.dashboards.seed import fresh_db, seed_large, utc_now

pytestmark = pytest.mark.slow
EVENTS, SPAN, BUDGET_S = 2_000_000, timedelta(hours=48), 0.200
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def large(postgres):
    url = fresh_db(postgres, "dash_large")
    now, t0 = utc_now(), time.perf_counter()
    took = seed_large(libpq_dsn(url), now, EVENTS, SPAN)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    print(f"\nseeded {EVENTS:,} events in {time.perf_counter() - t0:.1f} s ({steps})")
    yield libpq_dsn(url), now
    if TIMINGS:
        print("\nms (fastest of 3 after a warm-up)  query")
        for qid, secs in sorted(TIMINGS.items(), key=lambda kv: -kv[1]):
            print(f"{secs * 1000:8.1f}  {qid}")


def timed(conn: psycopg.Connection, sql: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    return time.perf_counter() - t0, len(rows)


@pytest.mark.parametrize("q", sql_queries(), ids=lambda q: q.id)
def test_query_within_budget(large, q: Query):
    dsn, now = large
    rng = TimeRange.last(q.span(), now)
    with psycopg.connect(dsn) as conn:
        sql = expand(q.sql, rng, variable_values(conn, q.dashboard, rng), q.min_interval)
        _, n = timed(conn, sql)  # warm-up: plan cache and shared buffers, as on a live dashboard
        # the fastest of 3: what the query costs, less what other processes on the cores took from it
        best = min(timed(conn, sql)[0] for _ in range(3))
    TIMINGS[q.id] = best
    assert n > 0, f"{q.id}: no rows"
    assert best <= BUDGET_S, f"{q.id}: {best * 1000:.0f} ms > {BUDGET_S * 1000:.0f} ms\n{sql}"
