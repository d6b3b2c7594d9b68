"""The mixed load, short (bench/api.py --mixed is the long one): `finsent api` as its own process
on a real Postgres, 100 clients mixing reads (series and event pages), scoring and subscription
writes for 6 s while 300 SSE streams stay open. No error of any kind, every stream opened, the
API's memory bounded (RSS growth under 150 MB), and right after the load /ready and a series
answer come at once. p50/p99 per kind are printed (pytest -s), not asserted: timings are for
the benchmark."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import numpy as np
import pytest

from bench.api import free_port, mixed, rss_mb, start_api
from tests.api.conftest import NOW, event, make_key, seed

pytestmark = pytest.mark.slow
CLIENTS, STREAMS, SECONDS = 100, 300, 6.0


@pytest.fixture
def served(db_url, dsn, tmp_path):
    seed(dsn, [event(i, source="ld", topic="macro", tickers=("T000",)) for i in range(200)])
    port = free_port()
    proc = start_api(db_url, port, tmp_path / "api.log")
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_mixed_load_with_open_streams(served, dsn):
    base, proc = served
    keys = [make_key(dsn, "read", "subscribe", name=f"load{i}") for i in range(10)]
    httpx.post(f"{base}/v1/score", json={"texts": ["warm the model"]}, timeout=60).raise_for_status()
    before = rss_mb(proc.pid)
    out = asyncio.run(mixed(base, keys, SECONDS, CLIENTS, STREAMS, NOW))
    peak = rss_mb(proc.pid)
    t0 = time.perf_counter()
    ready = httpx.get(f"{base}/ready", timeout=10)
    series = httpx.get(f"{base}/v1/series", params={"key": "T000", "bucket": "5m"}, timeout=10)
    after_ms = (time.perf_counter() - t0) * 1000
    for kind, lat in out["latencies"].items():
        ms = np.array(lat or [0]) * 1000
        print(f"{kind}: {len(lat)} requests, p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms")
    print(f"RSS {before:.0f} -> {peak:.0f} MB; /ready + a series after the load: {after_ms:.0f} ms")
    assert out["errors"] == {}, out["errors"]
    assert out["streams"] == STREAMS
    assert all(len(lat) > 0 for lat in out["latencies"].values()), {k: len(v) for k, v in out["latencies"].items()}
    assert peak - before < 150, (before, peak)
    assert ready.status_code == 200 and series.status_code == 200 and sum(series.json()["series"][0]["n"]) == 200
    assert after_ms < 1500


def test_the_api_leaves_its_start_up_objects_out_of_full_collections(served):
    """api/heap.py: once started (and once the symbol directory is loaded) `finsent api` has frozen
    its long-lived objects, so a full collection no longer walks them (a 55 ms pause each, the
    series p99 under load, before); the count is served as a metric."""
    url, _ = served

    def frozen() -> float:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        return next(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith("finsent_api_gc_frozen_objects "))

    at_start = frozen()
    assert at_start > 50_000  # FastAPI, pydantic, the modules: ~145,000 in a real process
    assert httpx.get(f"{url}/v1/entities", params={"q": "apple"}, timeout=30).status_code == 200
    assert frozen() > at_start  # the directory built on first use joined them


def test_an_app_that_stops_hands_its_objects_back_to_the_collector(db_url):
    import gc

    from tests.api.conftest import ApiServer, api_settings

    gc.unfreeze()
    with ApiServer(api_settings(db_url)) as server, server.client() as c:
        assert c.get("/health").status_code == 200
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
