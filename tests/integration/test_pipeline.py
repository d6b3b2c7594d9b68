"""The streaming spine against a real Kafka broker and a real PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from finsent.services import wait_for
from stream.simulate import Surge, feed
from tests.conftest import SHIPPED_VERSION

pytestmark = pytest.mark.slow
T0 = datetime.now(timezone.utc) - timedelta(hours=1)


def events(n, seed, surge=None, spacing=0.05, prefix="e"):
    return list(feed(n, seed, surge, start=T0, spacing_s=spacing, prefix=prefix))


def test_10k_messages_10k_rows_none_twice(stack):
    stack.start_worker()
    evs = events(10_000, 1)
    assert stack.produce(evs) == 10_000
    stack.wait_rows(10_000, timeout=400)
    time.sleep(2)
    (n, distinct), = stack.sql("SELECT count(*), count(DISTINCT (source, id)) FROM scored_event")
    assert n == distinct == 10_000
    ids = {r[0] for r in stack.sql("SELECT id FROM scored_event")}
    assert ids == {e["id"] for e in evs}
    (versions,), = stack.sql("SELECT array_agg(DISTINCT model_version) FROM scored_event")
    assert versions == [SHIPPED_VERSION]


def test_malformed_messages_go_to_dead_letter_with_reasons(stack):
    w = stack.start_worker()
    good = events(50, 2, prefix="g")
    ok = {"source": "wire-a", "published_at": "2026-01-05T10:00:00Z"}
    bad = {
        b"this is not json": "not JSON",
        b'["a", "list"]': "not a JSON object",
        orjson.dumps({"id": "m1", **ok}): "text: Field required",
        orjson.dumps({"id": "m2", "text": 42, **ok}): "text: Input should be a valid string",
        orjson.dumps({"id": "m3", "text": "x" * 20_001, **ok}): "more than 20000",
        b'{"id": "m4", "source": "wire-a", "text": "caf\xe9", "published_at": "2026-01-05T10:00:00Z"}': "UTF-8",
        orjson.dumps({"id": "m5", "text": "fine", "mood": "grumpy", **ok}): "mood: unknown field",
        orjson.dumps({"id": "m6", "text": "fine", "source": "wire-a", "published_at": "yesterday"}): "published_at",
        orjson.dumps({"id": "m7", "text": "   ", **ok}): "text: empty",
        orjson.dumps({"id": "m8", "text": "from the future", "source": "wire-a",
                      "published_at": "2099-01-01T00:00:00Z"}): "in the future",
    }
    stack.produce(good[:25] + list(bad) + good[25:] + [good[0]])  # good[0] again: redelivery, absorbed
    stack.wait_rows(50)
    time.sleep(2)
    dead = stack.read_topic(stack.settings.topic_deadletter, expect=len(bad) + 1, timeout=8)
    assert len(dead) == len(bad)  # the redelivered good[0] is not among them
    by_value = {m.value: dict(m.headers) for m in dead}
    for raw, reason in bad.items():
        headers = by_value[raw]  # the original bytes, unchanged
        assert reason in headers["reason"].decode(), (raw[:40], headers["reason"])
        assert headers["source_topic"].decode() in stack.settings.input_topics
        assert int(headers["source_offset"]) >= 0
    assert w.alive()
    assert stack.rows() == 50


def test_planted_surge_gives_one_alert_with_evidence(stack):
    stack.start_worker()
    evs = events(3000, 3, Surge("ACME", 2000, 25), spacing=0.1, prefix="s")
    stack.produce(evs)
    stack.wait_rows(3000)
    wait_for(lambda: stack.sql("SELECT count(*) FROM alert")[0][0] >= 1, 30, what="an alert")
    time.sleep(3)
    alerts = stack.sql("SELECT key_type, key, n, negatives, baseline_rate, z, p_value, sample_event_ids, "
                       "window_start, window_end FROM alert")
    assert len(alerts) == 1, alerts
    key_type, key, n, k, base, z, p, samples, ws, we = alerts[0]
    assert (key_type, key) == ("ticker", "ACME")
    assert k >= 8 and n >= k and z >= 4 and p <= 1e-5 and base < 0.5
    surge_ids = {e["id"] for e in evs[2000:2025]}
    assert len(samples) >= 3 and sum(s.split("/", 1)[1] in surge_ids for s in samples) >= 3
    for sample in samples:  # every piece of evidence is a stored negative item about ACME
        source, eid = sample.split("/", 1)
        (sentiment, tickers), = stack.sql("SELECT sentiment, tickers FROM scored_event WHERE source=%s AND id=%s",
                                          source, eid)
        assert sentiment == "negative" and "ACME" in tickers
    published = [datetime.fromisoformat(e["published_at"]) for e in evs[2000:2025]]
    assert ws <= max(published) and we >= min(published)
    (events_,), = stack.sql("SELECT array_agg(event ORDER BY id) FROM alert_event")
    assert events_[0] == "opened"
    alerts_topic = stack.read_topic(stack.settings.topic_alerts, expect=1)
    assert orjson.loads(alerts_topic[0].value)["key"] == "ACME"


def test_steady_background_raises_no_alert(stack):
    stack.start_worker()
    stack.produce(events(3000, 4, spacing=0.1, prefix="b"))
    stack.wait_rows(3000)
    time.sleep(3)
    assert stack.sql("SELECT count(*) FROM alert")[0][0] == 0


def test_kill_9_mid_stream_then_restart_every_id_once(stack):
    w = stack.start_worker()
    evs = events(6000, 5, prefix="k")
    stack.produce(evs)
    wait_for(lambda: stack.rows() >= 1500, 240, what="first rows")
    w.kill9()
    assert 0 < stack.rows() < 6000
    stack.start_worker()
    stack.wait_rows(6000)
    time.sleep(3)
    (n, distinct), = stack.sql("SELECT count(*), count(DISTINCT (source, id)) FROM scored_event")
    assert n == distinct == 6000


def test_postgres_down_20s_mid_stream_loses_nothing(stack, postgres):
    w = stack.start_worker()
    evs = events(4000, 6, prefix="p")
    import threading

    feeder = threading.Thread(target=stack.produce, args=(evs, 100.0))  # 40 s of traffic
    feeder.start()
    wait_for(lambda: stack.rows() >= 500, 120, what="first rows")
    postgres.stop()
    time.sleep(20)
    assert w.alive()
    postgres.start()
    feeder.join()
    stack.wait_rows(4000, timeout=180)
    time.sleep(2)
    (n, distinct), = stack.sql("SELECT count(*), count(DISTINCT (source, id)) FROM scored_event")
    assert n == distinct == 4000
    assert "postgres unavailable; retrying" in w.log_path.read_text()


def test_broker_restart_worker_resumes(stack, kafka):
    w = stack.start_worker()
    stack.produce(events(2000, 7, prefix="r1"))
    stack.wait_rows(2000)
    kafka.stop()
    time.sleep(3)
    kafka.start()
    stack.produce(events(2000, 8, prefix="r2"))
    stack.wait_rows(4000, timeout=240)
    assert w.alive()
    (n,), = stack.sql("SELECT count(DISTINCT (source, id)) FROM scored_event")
    assert n == 4000
