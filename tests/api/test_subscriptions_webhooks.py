"""Subscriptions (CRUD, ownership, validation) and webhook delivery to a local receiver:
signature verified, retried after 500s, disabled after repeated failures, still delivered
after an API restart, delivered once with two API processes; SSRF refusals."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from api import webhooks
from tests.api.conftest import ApiServer, api_settings, insert_alert, make_key, new_database, sql, wait_until
from core.pg import libpq_dsn

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A webhook receiver on 127.0.0.1: answers with the scripted statuses, then `default`."""

    def __init__(self, statuses=(), default: int = 200, delay_s: float = 0.0):
        self.statuses, self.default, self.delay_s = list(statuses), default, delay_s
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                with lock:
                    receiver.requests.append({"headers": dict(self.headers), "body": body})
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 refuses connections when two APIs send at once

        lock = threading.Lock()
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/hook?x=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
    """The receiver-side check documented in api/webhooks.py."""
    ts = headers["X-Finsent-Timestamp"]
    expected = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(ts)) <= tolerance_s and hmac.compare_digest(headers["X-Finsent-Signature"],
                                                                             "sha256=" + expected)


def subscribe(c: httpx.Client, url: str, ticker: str, **extra) -> dict:
    r = c.post("/v1/subscriptions", json={"name": f"hook-{ticker}", "url": url, "key_types": ["ticker"],
                                          "tickers": [ticker], **extra})
    assert r.status_code == 201, r.text
    return r.json()


def log(c: httpx.Client, sub_id: int) -> list[dict]:
    return c.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["items"][::-1]  # oldest first


def test_subscription_crud_and_ownership(client, dsn):
    mine, theirs, reader = make_key(dsn, "subscribe"), make_key(dsn, "subscribe"), make_key(dsn, "read")
    h = {"X-API-Key": mine}
    created = client.post("/v1/subscriptions", headers=h, json={
        "name": "desk", "url": "https://93.184.215.14/hook", "topics": ["earnings"], "tickers": ["ACME"],
        "min_severity": "medium"})
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["secret"].startswith("whsec_") and sub["delivery"] == "webhook" and sub["enabled"]
    got = client.get(f"/v1/subscriptions/{sub['id']}", headers=h).json()
    assert "secret" not in got and got["tickers"] == ["ACME"] and got["min_severity"] == "medium"
    stream = client.post("/v1/subscriptions", headers=h, json={"name": "s", "delivery": "stream"}).json()
    assert stream["secret"] is None and stream["url"] is None
    assert [s["id"] for s in client.get("/v1/subscriptions", headers=h).json()] == [sub["id"], stream["id"]]
    other = {"X-API-Key": theirs}
    assert client.get("/v1/subscriptions", headers=other).json() == []
    for method, path, body in (("GET", "", None), ("PATCH", "", {"name": "x"}), ("DELETE", "", None),
                               ("GET", "/deliveries", None)):
        r = client.request(method, f"/v1/subscriptions/{sub['id']}{path}", headers=other, json=body)
        assert r.status_code == 404, (method, path)  # another key's subscription does not exist for it
    r = client.patch(f"/v1/subscriptions/{sub['id']}", headers=h, json={"min_severity": "high", "tickers": []})
    assert r.status_code == 200 and r.json()["min_severity"] == "high" and r.json()["tickers"] == []
    assert r.json()["name"] == "desk" and r.json()["topics"] == ["earnings"]  # untouched fields stay
    r = client.patch(f"/v1/subscriptions/{sub['id']}", headers=h, json={"enabled": False})
    assert r.json()["enabled"] is False and r.json()["disabled_reason"] == "disabled by its owner"
    assert client.patch(f"/v1/subscriptions/{stream['id']}", headers=h,
                        json={"url": "https://93.184.215.14/"}).status_code == 400
    assert client.delete(f"/v1/subscriptions/{sub['id']}", headers=h).status_code == 204
    assert client.get(f"/v1/subscriptions/{sub['id']}", headers=h).status_code == 404
    assert client.delete(f"/v1/subscriptions/{sub['id']}", headers=h).status_code == 404
    assert client.post("/v1/subscriptions", headers={"X-API-Key": reader}, json={"name": "x", "delivery": "stream"}
                       ).status_code == 403
    assert client.post("/v1/subscriptions", json={"name": "x", "delivery": "stream"}).status_code == 401


@pytest.mark.parametrize("body", [
    {"name": "x"},  # webhook without url
    {"name": "x", "delivery": "stream", "url": "https://93.184.215.14/"},
    {"name": "", "delivery": "stream"}, {"name": "x" * 129, "delivery": "stream"},
    {"name": "x", "delivery": "stream", "topics": ["nope"]},
    {"name": "x", "delivery": "stream", "tickers": ["lower"]},
    {"name": "x", "delivery": "stream", "key_types": []},
    {"name": "x", "delivery": "stream", "min_severity": "critical"},
    {"name": "x", "delivery": "stream", "surprise": 1},
    {"name": "x", "delivery": "stream", "tickers": ["A"] * 201},
    {"name": "x", "url": "ftp://93.184.215.14/"},
    {"name": "x", "url": "https://user:pw@93.184.215.14/"},
    {"name": "x", "url": "https://no-such-host.invalid/"},
    {"name": "x", "url": "https://[::1/"},
])
def test_subscription_validation(client, dsn, body):
    key = make_key(dsn, "subscribe")
    r = client.post("/v1/subscriptions", headers={"X-API-Key": key}, json=body)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()


@pytest.mark.parametrize("url, reason", [
    ("http://93.184.215.14/", "scheme must be https"), ("https://u:p@93.184.215.14/", "credentials"),
    *((url, "^the target is not allowed") for url in (
        "https://127.0.0.1/", "https://localhost:8443/", "https://[::1]/", "https://10.1.2.3/", "https://192.168.0.10/",
        "https://169.254.169.254/latest/meta-data", "https://169.254.1.1/", "https://100.100.100.200/",
        "https://[fd00:ec2::254]/", "https://[::ffff:127.0.0.1]/", "https://0.0.0.0/", "https://224.0.0.1/",
        "https://2130706433/", "https://no-such-host.invalid/")),
])
def test_ssrf_refusals(url, reason):
    with pytest.raises(webhooks.UnsafeTarget, match=reason):
        asyncio.run(webhooks.resolve(url, allow_http=False, allow_private=False))


def test_ssrf_refused_by_the_api_and_checked_address_used(postgres, db_url, dsn, receiver):
    assert asyncio.run(webhooks.resolve("https://93.184.215.14/x", allow_http=False, allow_private=False)).ip == \
        "93.184.215.14"
    key = make_key(dsn, "subscribe")
    with ApiServer(api_settings(db_url, webhook_allow_private=False, webhook_allow_http=False)) as server, \
            server.client(key) as c:
        r = c.post("/v1/subscriptions", json={"name": "x", "url": "https://127.0.0.1:9/"})
        assert r.status_code == 422 and "not allowed" in r.json()["detail"][0]["msg"]
        r = c.post("/v1/subscriptions", json={"name": "x", "url": receiver.url})
        assert r.status_code == 422 and "https" in r.json()["detail"][0]["msg"]
    target = asyncio.run(webhooks.resolve(receiver.url, allow_http=True, allow_private=True))
    assert target.ip in ("127.0.0.1", "::1") and target.host_header.startswith("localhost:")
    assert target.connect_url.endswith("/hook?x=1") and "localhost" not in target.connect_url  # pinned address


def test_webhook_signed_and_delivered(client, api, dsn, receiver):
    insert_alert(dsn, key="HOOK1")  # before the subscription: not delivered to it
    key = make_key(dsn, "subscribe")
    with api.client(key) as c:
        sub = subscribe(c, receiver.url, "HOOK1")
        alert_id, event_id = insert_alert(dsn, key="HOOK1")
        insert_alert(dsn, key="NOTHOOK1")
        wait_until(lambda: receiver.requests, 10, "webhook delivery")
        [req] = receiver.requests
        assert verify(sub["secret"], req["headers"], req["body"])
        assert not verify("whsec_wrong", req["headers"], req["body"])
        body = json.loads(req["body"])
        assert body["id"] == event_id and body["event"] == "opened" and body["alert"]["alert_id"] == alert_id
        assert req["headers"]["Host"] == receiver.url.split("/")[2]
        assert req["headers"]["X-Finsent-Delivery"] == str(body["delivery_id"])
        entries = wait_until(lambda: log(c, sub["id"]), 5, "delivery log")
        assert [(e["outcome"], e["status_code"], e["alert_event_id"]) for e in entries] == [("delivered", 200, event_id)]
        assert 'finsent_webhook_deliveries_total{outcome="delivered"}' in c.get("/metrics").text


def test_webhook_retried_after_500s(api, dsn):
    receiver = Receiver(statuses=[500, 503])
    try:
        with api.client(make_key(dsn, "subscribe")) as c:
            sub = subscribe(c, receiver.url, "HOOK2")
            insert_alert(dsn, key="HOOK2")
            wait_until(lambda: len(receiver.requests) == 3, 10, "three attempts")
            entries = wait_until(lambda: (e := log(c, sub["id"])) and len(e) == 3 and e, 5, "log of three attempts")
            assert [(e["outcome"], e["status_code"]) for e in entries] == [("retry", 500), ("retry", 503),
                                                                           ("delivered", 200)]
            deliveries = {r["headers"]["X-Finsent-Delivery"] for r in receiver.requests}
            assert len(deliveries) == 1  # one delivery, retried
            assert all(verify(sub["secret"], r["headers"], r["body"]) for r in receiver.requests)
            assert c.get(f"/v1/subscriptions/{sub['id']}").json()["consecutive_failures"] == 0
    finally:
        receiver.close()


def test_subscription_disabled_after_repeated_failures(api, dsn):
    receiver = Receiver(default=500)
    try:
        with api.client(make_key(dsn, "subscribe")) as c:
            sub = subscribe(c, receiver.url, "HOOK3")
            insert_alert(dsn, key="HOOK3")
            got = wait_until(lambda: (s := c.get(f"/v1/subscriptions/{sub['id']}").json()) and not s["enabled"] and s,
                             15, "subscription disabled")
            assert got["consecutive_failures"] == 4 and got["disabled_reason"].startswith("4 consecutive delivery failures")
            assert "HTTP 500" in got["disabled_reason"]
            assert [e["outcome"] for e in log(c, sub["id"])] == ["retry"] * 3 + ["disabled"]
            assert len(receiver.requests) == 4
            insert_alert(dsn, key="HOOK3")  # a disabled subscription gets nothing
            assert sql(dsn, "SELECT count(*) FROM delivery WHERE subscription_id = %s AND state = 'pending'",
                       sub["id"]) == [(0,)]
            again = c.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": True}).json()
            assert again["enabled"] and again["consecutive_failures"] == 0 and again["disabled_reason"] is None
    finally:
        receiver.close()


def test_pending_delivery_survives_an_api_restart(postgres):
    url = new_database(postgres)
    dsn = libpq_dsn(url)
    receiver = Receiver(statuses=[500])
    key = make_key(dsn, "subscribe")
    settings = api_settings(url, webhook_retry_base_s=1.5, webhook_retry_max_s=1.5)
    try:
        with ApiServer(settings) as first, first.client(key) as c:
            sub = subscribe(c, receiver.url, "HOOK4")
            insert_alert(dsn, key="HOOK4")
            wait_until(lambda: receiver.requests, 10, "first attempt")
            wait_until(lambda: sql(dsn, "SELECT count(*) FROM delivery_attempt")[0][0] == 1, 5, "attempt logged")
        # the first API is gone with a retry pending in the table
        assert sql(dsn, "SELECT state, attempts FROM delivery") == [("pending", 1)]
        with ApiServer(settings) as second, second.client(key) as c:
            wait_until(lambda: len(receiver.requests) == 2, 10, "retry by the restarted API")
            entries = wait_until(lambda: (e := log(c, sub["id"])) and len(e) == 2 and e, 5, "log")
            assert [e["outcome"] for e in entries] == ["retry", "delivered"]
    finally:
        receiver.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiProcess:
    def __init__(self, database_url: str, log_path: Path):
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "FINSENT_WEBHOOK_ALLOW_PRIVATE": "true",
               "FINSENT_WEBHOOK_ALLOW_HTTP": "true", "FINSENT_WEBHOOK_RETRY_BASE_S": "0.05"}
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
                                      "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._up, 60, "API process start", interval=0.2)

    def _up(self) -> bool:
        assert self.proc.poll() is None, "API process exited"
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()


def test_delivered_once_with_two_api_processes(postgres, tmp_path):
    url = new_database(postgres)
    dsn = libpq_dsn(url)
    receiver = Receiver(delay_s=0.05)  # slow enough that both processes are busy at once
    procs = []
    try:
        procs = [ApiProcess(url, tmp_path / f"api{i}.log") for i in range(2)]
        key = make_key(dsn, "subscribe")
        with httpx.Client(base_url=procs[0].url, headers={"X-API-Key": key}) as c:
            subs = [subscribe(c, receiver.url, "TWO"), subscribe(c, receiver.url, "TWO")]
        events = [insert_alert(dsn, key="TWO")[1] for _ in range(15)]
        wait_until(lambda: sql(dsn, "SELECT count(*) FROM delivery WHERE state = 'delivered'")[0][0] == 30, 30,
                   "30 deliveries")
        pairs = [(json.loads(r["body"])["id"], json.loads(r["body"])["subscription_id"]) for r in receiver.requests]
        assert sorted(pairs) == sorted((e, s["id"]) for e in events for s in subs)  # each exactly once
        failed = sql(dsn, "SELECT outcome, error FROM delivery_attempt WHERE outcome <> 'delivered'")
        assert failed == [] and sql(dsn, "SELECT count(*) FROM delivery_attempt") == [(30,)]
        for p in procs:
            assert p.proc.poll() is None
    finally:
        for p in procs:
            p.stop()
        receiver.close()
    senders = [(tmp_path / f"api{i}.log").read_text().count("webhook.delivered") for i in range(2)]
    assert sum(senders) == 30 and min(senders) > 0, senders  # both processes really sent
