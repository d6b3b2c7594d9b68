"""The worker's /health and /metrics endpoints on a running worker."""

import urllib.request

import pytest

from finsent.services import wait_for
from stream.simulate import feed

pytestmark = pytest.mark.slow


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except OSError:
        return None


def test_health_and_metrics(stack):
    stack.start_worker()
    port = stack.env_overrides["web_port"]
    stack.produce(list(feed(300, 9, prefix="h")) + [b"garbage"])
    stack.wait_rows(300)
    status, body = wait_for(lambda: get(f"http://127.0.0.1:{port}/health"), 30, what="health")
    assert status == 200 and '"status":"ok"' in body.replace(" ", "")

    dead = 'finsent_deadlettered_total{reason="not JSON"} 1.0'

    def scraped():
        # The garbage line is last in its partition and may be stored in a batch of its own after
        # the 300th row: wait for both counts, not for one and then assert the other.
        r = get(f"http://127.0.0.1:{port}/metrics")
        return r if r and "finsent_scored_total 300.0" in r[1] and dead in r[1] else None

    _, text = wait_for(scraped, 30, what="metrics with 300 scored and 1 dead-lettered")
    for name in ("finsent_consumed_total", "finsent_deadlettered_total", "finsent_batch_size_bucket",
                 "finsent_model_latency_seconds_bucket", "finsent_write_latency_seconds_bucket", "finsent_consumer_lag"):
        assert name in text
    assert dead in text and "finsent_scored_total 300.0" in text
