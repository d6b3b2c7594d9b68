"""A model hot swap mid-stream with the real broker and Postgres: the worker follows
MODEL_DIR/current between two batches; every message is stored once, every row carries the
version that scored it, no v1 row is stored after the first v2 row, and nothing is scored twice."""

from __future__ import annotations

import json
import threading

import httpx

from finsent.services import wait_for
from models.runtime import DEFAULT_ARTIFACT
from stream.simulate import feed
from tests.conftest import swap_models_dir

V2 = "finsent-minilm-v2-hot"


def health(port: int) -> dict:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}


def test_swap_mid_stream_loses_nothing_and_rows_carry_their_version(kafka, postgres, tmp_path):
    from tests.integration.conftest import Stack

    models = swap_models_dir(tmp_path, V2)
    meta = json.loads((DEFAULT_ARTIFACT / "finsent.json").read_text())
    s = Stack(kafka, postgres, tmp_path, model_dir=str(models), model_poll_s=0.5)
    try:
        w = s.start_worker()
        port = s.env_overrides["web_port"]
        wait_for(lambda: health(port).get("assigned_partitions", 0) > 0, 180, what="the worker")
        assert health(port)["model"]["version"] == meta["version"]
        evs = list(feed(3000, 17, prefix="hs"))
        feeder = threading.Thread(target=s.produce, args=(evs, 200.0))  # ~15 s of traffic
        feeder.start()
        wait_for(lambda: s.rows() >= 800, 120, what="rows before the swap")
        (models / "current").write_text("v2")
        wait_for(lambda: health(port).get("model", {}).get("version") == V2, 30, what="the swap")
        feeder.join()
        s.wait_rows(3000)

        (n, distinct), = s.sql("SELECT count(*), count(DISTINCT (source, id)) FROM scored_event")
        assert n == distinct == 3000
        versions = dict(s.sql("SELECT model_version, count(*) FROM scored_event GROUP BY 1"))
        assert set(versions) == {meta["version"], V2} and min(versions.values()) >= 100, versions
        (last_v1, first_v2), = s.sql(
            "SELECT max(stored_at) FILTER (WHERE model_version = %s), min(stored_at) FILTER (WHERE model_version = %s)"
            " FROM scored_event", meta["version"], V2)
        assert last_v1 <= first_v2
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "finsent_duplicates_total 0.0" in metrics  # nothing was scored twice
        assert 'finsent_model_swaps_total{outcome="swapped"} 1.0' in metrics

        # a broken model is refused; the worker goes on with v2 and says why
        (models / "current").write_text("broken")
        wait_for(lambda: health(port).get("model", {}).get("swap_error"), 30, what="the refused swap")
        h = health(port)
        assert h["model"]["version"] == V2 and "broken" in h["model"]["swap_error"]
        more = list(feed(50, 18, prefix="hs2"))
        s.produce(more)
        s.wait_rows(3050)
        assert s.sql("SELECT count(*) FROM scored_event WHERE id LIKE 'hs2-%%' AND model_version = %s", V2)[0][0] == 50
        assert w.alive()
    finally:
        s.close()
