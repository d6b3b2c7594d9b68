"""Issue 17, items 4 and 7, on the detect path of a real worker: an alert write that cannot get
its lock is a /health problem within the lock timeout (it waited for ever with /health 200), and
an alert the broker refuses stops the worker instead of being dropped; after a restart it is
published."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import orjson
import psycopg
import pytest

from finsent.services import wait_for
from stream.simulate import Surge
from tests.integration.test_faults_delivery import topic_max_bytes, wait_exit
from tests.integration.test_pipeline import events

pytestmark = pytest.mark.slow


def health(port: int):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return None


def surge():
    return events(3000, 3, Surge("ACME", 2000, 25), spacing=0.1, prefix="s")


def test_alert_table_left_locked_is_reported_and_the_alert_follows_the_unlock(stack):
    port = stack.env_overrides["web_port"]
    stack.start_worker(db_lock_timeout_s=2)
    holder = psycopg.connect(stack.dsn)  # an operator's session: LOCK TABLE alert, never committed
    holder.execute("LOCK TABLE alert")
    try:
        stack.produce(surge())
        stack.wait_rows(3000)

        def locked_reported():
            h = health(port)
            return h if h and h[0] == 503 and "alert" in h[1]["problems"].get("postgres", "") else None
        status, body = wait_for(locked_reported, 90, what="/health 503 naming the alert write")
        assert "LockNotAvailable" in body["problems"]["postgres"]
    finally:
        holder.rollback()
        holder.close()
    wait_for(lambda: stack.sql("SELECT count(*) FROM alert")[0][0] >= 1, 60, what="the alert after the unlock")
    wait_for(lambda: (h := health(port)) and "postgres" not in h[1]["problems"], 60, what="the problem cleared")


def test_an_alert_the_broker_refuses_stops_the_worker_and_is_published_after_restart(stack):
    s = stack.settings
    topic_max_bytes(stack, s.topic_alerts, 100)  # an alert record is larger: refused
    w = stack.start_worker()
    stack.produce(surge())
    assert wait_exit(w, 240) == 70  # dropped with a log line before, its state moved on
    assert "alert to" in w.log_path.read_text(errors="replace")
    topic_max_bytes(stack, s.topic_alerts, None)
    stack.start_worker()
    got = stack.read_topic(s.topic_alerts, expect=1, timeout=180)
    assert [orjson.loads(m.value)["key"] for m in got][:1] == ["ACME"]
    assert stack.sql("SELECT count(*) FROM alert")[0][0] == 1
