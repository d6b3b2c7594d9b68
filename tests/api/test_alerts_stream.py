"""GET /v1/alerts and /v1/alerts/{id} (evidence), and the live stream: an SSE client gets an
alert within 2 s of its alert_event row being written, resumes with Last-Event-ID, gets
keep-alives; the WebSocket twin; stream filters and errors."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.api.conftest import event, insert_alert, make_key, seed

pytestmark = pytest.mark.slow


def read_events(lines, n: int, on_connected=None) -> list[dict]:
    """Parse SSE lines into events until `n` have arrived; calls `on_connected` after the
    server's first comment (the stream is then registered with the hub)."""
    out, cur = [], {}
    for line in lines:
        if line.startswith(":"):
            if line == ": connected" and on_connected:
                on_connected()
            continue
        if line == "":
            if "data" in cur:
                out.append({**cur, "data": json.loads(cur["data"])})
                if len(out) == n:
                    return out
            cur = {}
            continue
        field, _, value = line.partition(": ")
        cur[field] = value
    raise AssertionError(f"stream ended after {len(out)} events")


def test_alert_list_and_detail(client, dsn):
    seed(dsn, [event(i, source="al", tickers=("ALRT",), sentiment="negative") for i in range(5)])
    aid, _ = insert_alert(dsn, key="ALRT", samples=("al/e1", "al/e3", "missing/x"))
    insert_alert(dsn, key="ALRT", event="escalated", alert_id=aid, revision=1)
    others = [insert_alert(dsn, key="ALRO", severity="low")[0] for _ in range(3)]
    r = client.get(f"/v1/alerts/{aid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"] == "ALRT" and body["severity"] == "high" and body["n"] == 40
    assert {(s["source"], s["id"]) for s in body["samples"]} == {("al", "e1"), ("al", "e3")}
    assert all(s["text"] for s in body["samples"])
    assert [h["event"] for h in body["history"]] == ["opened", "escalated"]
    assert body["series"]["key"] == "ALRT" and len(body["series"]["t"]) >= 120 and sum(body["series"]["n"]) == 5
    listed = client.get("/v1/alerts", params={"key": ["ALRO"], "limit": 2}).json()
    assert len(listed["items"]) == 2 and listed["next_cursor"]
    rest = client.get("/v1/alerts", params={"key": ["ALRO"], "limit": 2, "cursor": listed["next_cursor"]}).json()
    assert sorted(a["id"] for a in listed["items"] + rest["items"]) == others and rest["next_cursor"] is None
    high = client.get("/v1/alerts", params={"min_severity": "medium", "key_type": "ticker"}).json()["items"]
    assert {a["key"] for a in high} >= {"ALRT"} and "ALRO" not in {a["key"] for a in high}
    assert client.get("/v1/alerts", params={"state": "resolved", "key": "ALRT"}).json()["items"] == []
    assert client.get("/v1/alerts/999999999").status_code == 404
    assert client.get("/v1/alerts/0").status_code == 422
    assert client.get("/v1/alerts/abc").status_code == 422
    assert client.get("/v1/alerts", params={"state": "closed"}).status_code == 422
    assert client.get("/v1/alerts", params={"cursor": "e30"}).status_code == 400


def test_sse_alert_within_two_seconds_and_resume(api, dsn):
    seen_at = {}

    def write_alert():
        seen_at["t0"] = time.monotonic()
        seen_at["ids"] = insert_alert(dsn, key="SSE1")

    with api.client() as c, c.stream("GET", "/v1/stream/alerts", params={"ticker": "SSE1"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        [first] = read_events(r.iter_lines(), 1, on_connected=write_alert)
        latency = time.monotonic() - seen_at["t0"]
    assert latency < 2.0, f"alert reached the stream after {latency:.2f} s"
    alert_id, event_id = seen_at["ids"]
    assert first["id"] == str(event_id) and first["event"] == "opened"
    assert first["data"]["alert"]["alert_id"] == alert_id and first["data"]["alert"]["key"] == "SSE1"
    # written while the client was away; one does not match the filter
    e2 = insert_alert(dsn, key="SSE1", event="escalated", alert_id=alert_id, revision=1)[1]
    insert_alert(dsn, key="OTHER")
    e3 = insert_alert(dsn, key="SSE1", event="resolved", alert_id=alert_id, revision=1)[1]
    with api.client() as c, c.stream("GET", "/v1/stream/alerts", params={"ticker": "SSE1"},
                                     headers={"Last-Event-ID": str(event_id)}) as r:
        resumed = read_events(r.iter_lines(), 2)
    assert [(e["id"], e["event"]) for e in resumed] == [(str(e2), "escalated"), (str(e3), "resolved")]


def test_sse_keepalive_and_errors(api, dsn):
    with api.client() as c:
        with c.stream("GET", "/v1/stream/alerts", params={"ticker": "QUIET"}) as r:
            lines = r.iter_lines()
            assert [next(lines) for _ in range(4)][0] == ": connected"
            assert ": keep-alive" in [next(lines) for _ in range(4)]
        assert c.get("/v1/stream/alerts", headers={"Last-Event-ID": "abc"}).status_code == 400
        assert c.get("/v1/stream/alerts", params={"min_severity": "extreme"}).status_code == 422
        assert c.get("/v1/stream/alerts", params={"subscription_id": 1}).status_code == 401
        key = make_key(dsn, "subscribe")
        r = c.get("/v1/stream/alerts", params={"subscription_id": 123456}, headers={"X-API-Key": key})
        assert r.status_code == 404


def test_sse_follows_a_subscription_and_counts_clients(api, dsn):
    key = make_key(dsn, "subscribe")
    with api.client(key) as c:
        sub = c.post("/v1/subscriptions", json={"name": "live", "delivery": "stream", "key_types": ["topic"],
                                                "topics": ["ipo"], "min_severity": "medium"}).json()
        got = {}
        with c.stream("GET", "/v1/stream/alerts", params={"subscription_id": sub["id"]}) as r:
            def write():
                got["clients"] = c.get("/metrics").text
                insert_alert(dsn, key_type="ticker", key="IPO")  # wrong key type
                insert_alert(dsn, key_type="topic", key="ipo", severity="low")  # below min severity
                got["id"] = insert_alert(dsn, key_type="topic", key="ipo", severity="medium")[1]
            [e] = read_events(r.iter_lines(), 1, on_connected=write)
        assert e["id"] == str(got["id"])
        assert "finsent_api_sse_clients 1.0" in got["clients"]


def test_websocket_twin(api, dsn):
    async def go():
        url = api.url.replace("http://", "ws://") + "/v1/stream/alerts/ws?ticker=WS1"
        async with websockets.connect(url) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "keep-alive"}  # registered, quiet
            event_id = await asyncio.to_thread(lambda: insert_alert(dsn, key="WS1")[1])
            while (msg := json.loads(await asyncio.wait_for(ws.recv(), 5))).get("type") == "keep-alive":
                pass
            assert msg["id"] == event_id and msg["alert"]["key"] == "WS1"
        with pytest.raises(websockets.InvalidStatus) as refused:  # no key for a subscription: refused handshake
            await websockets.connect(api.url.replace("http://", "ws://") + "/v1/stream/alerts/ws?subscription_id=1")
        assert refused.value.response.status_code == 403
    asyncio.run(go())
