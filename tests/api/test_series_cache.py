"""The series cache (api/series_cache.py, migration 0006): an answer is served from memory until
a rollup change at or before its end commits, then read again; a replayed batch (no row changed)
keeps it; an answer whose span ends before the change stays cached; while the LISTEN connection
is down nothing is cached and answers stay right; identical concurrent requests share one read."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.api.conftest import NOW, event, seed, sql, wait_until

pytestmark = pytest.mark.slow
HOUR = NOW.replace(minute=0)


def counter(client, outcome: str) -> float:
    text = client.get("/metrics").text
    m = re.search(rf'^finsent_api_series_cache_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return float(m.group(1))


def gauge(client, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M).group(1))


def total(client, key: str, start, end) -> int:
    r = client.get("/v1/series", params={"key_type": "ticker", "key": key, "bucket": "1h", "start": start.isoformat(),
                                         "end": end.isoformat()})
    assert r.status_code == 200, r.text
    return sum(r.json()["series"][0]["n"])


def test_cached_until_the_rollups_change(client, dsn):
    wait_until(lambda: gauge(client, "finsent_api_series_cache_listening") == 1, 10, "cache listening")
    at = HOUR - timedelta(hours=3, minutes=30)
    rows = [event(i, source="sc", tickers=("SCA",), at=at) for i in range(5)]
    seed(dsn, rows)
    span = (HOUR - timedelta(hours=6), HOUR)
    early = (HOUR - timedelta(hours=6), HOUR - timedelta(hours=4))  # ends before every change below
    assert total(client, "SCA", *span) == 5 and total(client, "SCA", *early) == 0
    hits = counter(client, "hit")
    assert total(client, "SCA", *span) == 5 and total(client, "SCA", *early) == 0
    assert counter(client, "hit") == hits + 2

    seed(dsn, rows)  # a replay changes no row: nothing to notify, still cached
    assert total(client, "SCA", *span) == 5 and counter(client, "hit") == hits + 3

    seed(dsn, [event(100, source="sc", tickers=("SCA",), at=at)])  # committed: the cached answer goes
    wait_until(lambda: total(client, "SCA", *span) == 6, 5, "the new row in the series")
    assert total(client, "SCA", *span) == 6
    hits = counter(client, "hit")
    assert total(client, "SCA", *early) == 0 and counter(client, "hit") == hits + 1  # untouched span stayed

    # a write straight into the rollups (not the worker's path) is seen too, and so is a delete
    sql(dsn, "UPDATE event_rollup_hour SET n = n + 10 WHERE key_type = 'ticker' AND key = 'SCA'")
    wait_until(lambda: total(client, "SCA", *span) == 16, 5, "the rollup update")
    sql(dsn, "DELETE FROM event_rollup_hour WHERE key_type = 'ticker' AND key = 'SCA'")
    wait_until(lambda: total(client, "SCA", *span) == 0, 5, "the rollup delete")


def test_listener_lost_means_no_cache_and_right_answers(client, dsn):
    at = HOUR - timedelta(hours=2, minutes=10)
    seed(dsn, [event(i, source="sl", tickers=("SLB",), at=at) for i in range(3)])
    span = (HOUR - timedelta(hours=5), HOUR)
    wait_until(lambda: gauge(client, "finsent_api_series_cache_listening") == 1, 10, "cache listening")
    assert total(client, "SLB", *span) == 3
    sql(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'finsent-api-cache'")
    wait_until(lambda: gauge(client, "finsent_api_series_cache_listening") == 0, 5, "listener lost")
    off = counter(client, "off")
    seed(dsn, [event(10, source="sl", tickers=("SLB",), at=at)])
    # whatever arrives while no one listens, an answer is read from the database
    assert total(client, "SLB", *span) == 4 and counter(client, "off") >= off + 1
    wait_until(lambda: gauge(client, "finsent_api_series_cache_listening") == 1, 15, "listening again")
    assert total(client, "SLB", *span) == 4
    hits = counter(client, "hit")
    assert total(client, "SLB", *span) == 4 and counter(client, "hit") == hits + 1


def test_identical_concurrent_requests_share_one_read(client, dsn):
    seed(dsn, [event(i, source="sf", topic="ipo", tickers=(), at=HOUR - timedelta(hours=1, minutes=i)) for i in
               range(30)])
    wait_until(lambda: gauge(client, "finsent_api_series_cache_listening") == 1, 10, "cache listening")
    misses, shared, hits = counter(client, "miss"), counter(client, "shared"), counter(client, "hit")
    params = {"key_type": "topic", "key": "ipo", "bucket": "1m", "start": (HOUR - timedelta(hours=12)).isoformat(),
              "end": HOUR.isoformat()}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: client.get("/v1/series", params=params), range(64)))
    assert all(r.status_code == 200 for r in answers)
    assert len({r.content for r in answers}) == 1 and sum(answers[0].json()["series"][0]["n"]) == 30
    reads = counter(client, "miss") - misses
    assert reads >= 1 and reads + (counter(client, "shared") - shared) + (counter(client, "hit") - hits) == 64
    assert reads <= 2  # the rest waited for that read or found its answer
