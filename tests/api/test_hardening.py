"""Issue 18, the outside check's failures: a cold pool under hundreds of concurrent keyed
requests, bounded waits and SIGTERM, bad input that must be a 4xx (timestamps that overflow in
UTC, non-finite numbers and lone surrogates in JSON), forged cursors, IPv4 embedded in IPv6
webhook targets, revocation of live streams and webhooks, bounded resources, series `end`
inside a minute, CSV formula injection, and what stays open when reads are closed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import httpx
import psycopg
import pytest
import websockets

from api import webhooks
from tests.api.conftest import NOW, ApiServer, api_settings, event, insert_alert, make_key, seed, sql, wait_until
from tests.api.test_subscriptions_webhooks import ROOT, Receiver, free_port

pytestmark = pytest.mark.slow
OVERFLOWS = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59")


# --- 1. the pool -----------------------------------------------------------------------------
async def _storm(url: str, keys: list[str | None], paths: list[str], n: int) -> list[int | str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        async def one(i: int):
            key = keys[i % len(keys)]
            path = paths[i // len(keys) % len(paths)]
            try:
                r = await c.get(path, headers={"X-API-Key": key} if key else {})
                # /ready says 503 while every pooled connection is busy: that is its job, not a failure
                if path == "/ready" and r.status_code == 503 and "busy" in r.text:
                    return 200
                return r.status_code if r.status_code < 500 else f"{path} {r.status_code} {r.text[:80]}"
            except httpx.HTTPError as exc:
                return type(exc).__name__
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_hundreds_of_concurrent_requests_on_a_cold_small_pool(db_url, dsn):
    good, sub = make_key(dsn, "read"), make_key(dsn, "subscribe")
    keys = [None, good, "fsk_invented", sub, "x" * 300]
    paths = ["/v1/events?limit=5", "/v1/series?key=ACME&bucket=1h", "/v1/alerts", "/v1/subscriptions", "/ready"]
    with ApiServer(api_settings(db_url, api_pool_size=2, api_pool_timeout_s=30)) as server:
        started = time.monotonic()
        statuses = asyncio.run(_storm(server.url, keys, paths, 400))
        elapsed = time.monotonic() - started
        assert all(isinstance(s, int) and s < 500 for s in statuses), sorted(set(map(str, statuses)))
        assert elapsed < 60
        assert {200, 401, 403} <= set(statuses)
        with server.client() as c:  # and the API answers at once afterwards
            assert c.get("/ready", timeout=5).status_code == 200


def test_ready_reflects_an_exhausted_pool_and_requests_wait_bounded(db_url, dsn):
    key = make_key(dsn, "read")
    settings = api_settings(db_url, api_pool_size=2, api_pool_timeout_s=1, api_statement_timeout_s=30)
    with ApiServer(settings) as server, psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE api_key IN ACCESS EXCLUSIVE MODE")  # keyed requests block, holding connections
        results: list = []

        def keyed():
            with server.client(key) as c:
                results.append(c.get("/v1/events", timeout=30).status_code)

        threads = [threading.Thread(target=keyed) for _ in range(4)]
        for t in threads:
            t.start()
        with server.client() as c:
            wait_until(lambda: c.get("/ready", timeout=5).status_code == 503, 10, "/ready 503 while exhausted")
            r = c.get("/ready", timeout=5)
            assert "busy" in r.json()["detail"]
            started = time.monotonic()
            r = c.get("/v1/events", timeout=10)  # no connection within the acquire timeout: 503, not a hang
            assert r.status_code == 503 and r.headers.get("retry-after") and time.monotonic() - started < 5
        locker.rollback()
        for t in threads:
            t.join(30)
        assert len(results) == 4 and all(s in (200, 503) for s in results) and 200 in results
        with server.client() as c:
            assert c.get("/ready").status_code == 200


def test_sigterm_stops_the_api_with_streams_open_and_requests_stuck(db_url, dsn):
    key = make_key(dsn, "read")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "FINSENT_API_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-c", "from api.cli import serve; from core.settings import Settings; "
                             "serve(Settings())"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def up():
            try:
                return httpx.get(f"{url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, 60, "API start", interval=0.2)
        clients = [httpx.Client(base_url=url, timeout=30) for _ in range(3)]
        streams = [c.stream("GET", "/v1/stream/alerts").__enter__() for c in clients]
        for s in streams:
            assert s.status_code == 200
        locker = psycopg.connect(dsn)
        locker.execute("LOCK TABLE api_key IN ACCESS EXCLUSIVE MODE")  # keyed requests now wait on the lock
        for _ in range(3):
            threading.Thread(target=lambda: httpx.get(f"{url}/v1/events", headers={"X-API-Key": key}, timeout=60),
                             daemon=True).start()
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(20)
        assert time.monotonic() - started < 15
        locker.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# --- 2. bad input is a 4xx -----------------------------------------------------------------
TIME_ROUTES = [("/v1/events", "start"), ("/v1/events", "end"), ("/v1/series?key=ACME", "start"),
               ("/v1/series?key=ACME", "end"), ("/v1/movers", "end"), ("/v1/alerts", "start"), ("/v1/alerts", "end"),
               ("/v1/feedback", "start"), ("/v1/feedback", "end"), ("/v1/feedback/export", "end")]


@pytest.mark.parametrize("path, param", TIME_ROUTES)
def test_timestamps_that_overflow_in_utc_are_4xx(client, dsn, path, param):
    key = make_key(dsn, "admin")
    for value in OVERFLOWS:
        r = client.get(path, params={param: value}, headers={"X-API-Key": key})
        assert 400 <= r.status_code < 500, (value, r.status_code, r.text)
        assert "detail" in r.json()


def forged(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path, cursor", [
    ("/v1/events", forged(OVERFLOWS[0], "news", "e1", OVERFLOWS[1], OVERFLOWS[0])),
    ("/v1/events", forged("2020-01-01T00:00:00", "news", "e1", "1970-01-01T00:00:00+00:00",
                          "2199-01-01T00:00:00+00:00")),
    ("/v1/alerts", forged(OVERFLOWS[1], 5)), ("/v1/feedback", forged(2**70)),
    ("/v1/subscriptions/1/deliveries", forged(-5)),
])
def test_crafted_cursors_are_400(client, dsn, path, cursor):
    key = make_key(dsn, "admin")
    r = client.get(path, params={"cursor": cursor}, headers={"X-API-Key": key})
    assert r.status_code in (400, 404), r.text
    if r.status_code == 400:
        assert r.json() == {"detail": "invalid cursor"}


def test_a_real_cursor_still_pages_and_cannot_be_edited(client, dsn):
    seed(dsn, [event(60_000 + i, source="cur", tickers=("CURS",)) for i in range(5)])
    first = client.get("/v1/events", params={"ticker": "CURS", "limit": 2}).json()
    second = client.get("/v1/events", params={"ticker": "CURS", "limit": 2, "cursor": first["next_cursor"]})
    assert second.status_code == 200 and len(second.json()["items"]) == 2
    tampered = first["next_cursor"][:-2] + ("AA" if not first["next_cursor"].endswith("AA") else "BB")
    assert client.get("/v1/events", params={"ticker": "CURS", "cursor": tampered}).status_code == 400


BAD_JSON = [b'{"texts": ["\\ud800 lone"]}', b'{"texts": ["ok"], "x": NaN}', b'{"texts": ["a", Infinity]}',
            b'{"texts": [-Infinity]}', b'{"texts": [1e400]}', b'{"name": "\\udfff", "delivery": "stream"}',
            b'{"name": "n", "delivery": "stream", "tickers": ["\\ud83d"]}', b'{"note": "\\ud800", "topic": "ipo"}',
            b'{"sentiment": "negative", "note": NaN}', b'\xff\xfe{}']


@pytest.mark.parametrize("body", BAD_JSON)
@pytest.mark.parametrize("path", ["/v1/score", "/v1/subscriptions", "/v1/events/news/e1/feedback"])
def test_non_finite_numbers_and_lone_surrogates_in_json_are_422(client, dsn, path, body):
    seed(dsn, [event(1)])
    key = make_key(dsn, "admin")
    for ctype in ("application/json", None):
        headers = {"X-API-Key": key, **({"Content-Type": ctype} if ctype else {})}
        r = client.post(path, content=body, headers=headers)
        assert r.status_code == 422, (path, body, r.status_code, r.text)
        assert isinstance(r.json()["detail"], list)


def test_a_patch_with_a_lone_surrogate_is_422(client, dsn):
    key = make_key(dsn, "subscribe")
    sub = client.post("/v1/subscriptions", json={"name": "s", "delivery": "stream"}, headers={"X-API-Key": key}).json()
    r = client.patch(f"/v1/subscriptions/{sub['id']}", content=b'{"name": "\\ud800"}',
                     headers={"X-API-Key": key, "Content-Type": "application/json"})
    assert r.status_code == 422


def test_nul_and_driver_errors_do_not_name_exception_classes(client):
    for params in ({"source": "a\x00b"}, {"q": "x\x00"}, {"model_version": "\x00"}):
        r = client.get("/v1/events", params=params)
        assert 400 <= r.status_code < 500, r.text
        assert "Error" not in r.text and "asyncpg" not in r.text


# --- 4. SSRF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("host", [
    "[::7f00:1]", "[::a00:1]", "[::ffff:7f00:1]", "[::ffff:0:7f00:1]", "[::ffff:0:a9fe:a9fe]",  # compatible, SIIT
    "[64:ff9b::7f00:1]", "[64:ff9b::a9fe:a9fe]", "[64:ff9b::c0a8:1]", "[64:ff9b:1::a00:1]",
    "[64:ff9b:1:7f00:1::]",  # NAT64 (well-known and local-use)
    "[2002:7f00:1::1]", "[2002:a00:1::]", "[2002:a9fe:a9fe::1]",  # 6to4
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]", "[2001:0:7f00:1:0:0:0:1]",  # Teredo (client 127.0.0.1; server)
    "[::]", "[::1]", "127.1", "0x7f.1", "localhost", "[fe80::1]", "[fc00::1]", "100.64.0.1", "198.18.0.1",
])
def test_ssrf_ipv4_embedded_in_ipv6_and_other_private_forms(host):
    with pytest.raises(webhooks.UnsafeTarget) as err:
        asyncio.run(webhooks.resolve(f"https://{host}/hook", allow_http=False, allow_private=False))
    assert str(err.value) == webhooks.NOT_ALLOWED


@pytest.mark.parametrize("host", ["93.184.215.14", "[64:ff9b::5db8:d70e]", "[2606:4700::6810:84e5]"])
def test_ssrf_public_addresses_pass(host):
    assert asyncio.run(webhooks.resolve(f"https://{host}/", allow_http=False, allow_private=False)).ip


def test_ssrf_refusal_does_not_name_the_resolved_address(db_url, dsn):
    key = make_key(dsn, "subscribe")
    with ApiServer(api_settings(db_url, webhook_allow_private=False, webhook_allow_http=False)) as server, \
            server.client(key) as c:
        for url in ("https://localhost:9/", "https://no-such-host.invalid/", "https://[::7f00:1]/"):
            r = c.post("/v1/subscriptions", json={"name": "x", "url": url})
            assert r.status_code == 422
            msg = r.json()["detail"][0]["msg"]
            assert "127.0.0.1" not in msg and "::1" not in msg and "7f00" not in msg.replace(url, ""), msg
            assert "not allowed" in msg


# --- 5. revocation -------------------------------------------------------------------------
def test_revoking_a_key_ends_its_sse_and_websocket_streams(db_url, dsn):
    key = make_key(dsn, "read", name="to-revoke")
    other = make_key(dsn, "read", name="stays")
    with ApiServer(api_settings(db_url, sse_keepalive_s=30, api_revocation_check_s=0.5)) as server:
        async def go():
            ws = await websockets.connect(f"ws://{server.url[7:]}/v1/stream/alerts/ws",
                                          additional_headers={"X-API-Key": key})
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as c:
                async with c.stream("GET", "/v1/stream/alerts", headers={"X-API-Key": key}) as revoked, \
                        c.stream("GET", "/v1/stream/alerts", headers={"X-API-Key": other}) as kept:
                    assert revoked.status_code == kept.status_code == 200
                    lines = revoked.aiter_lines()
                    assert await lines.__anext__() == ": connected"
                    sql(dsn, "UPDATE api_key SET revoked = true WHERE name = 'to-revoke'")
                    started = time.monotonic()
                    rest = [line async for line in lines]  # the stream ends
                    assert time.monotonic() - started < 10 and any("revoked" in x for x in rest), rest
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(ws.recv(), 10)
                    assert closed.value.rcvd.code == 1008
                    assert not kept.is_closed
        asyncio.run(go())


def test_a_revoked_keys_webhooks_stop(db_url, dsn):
    receiver = Receiver()
    try:
        keep, revoke = make_key(dsn, "subscribe", name="wh-keep"), make_key(dsn, "subscribe", name="wh-revoke")
        with ApiServer(api_settings(db_url)) as server:
            ids = {}
            for key, name in ((keep, "keep"), (revoke, "revoke")):
                with server.client(key) as c:
                    r = c.post("/v1/subscriptions", json={"name": name, "url": receiver.url, "key_types": ["ticker"],
                                                          "tickers": ["REVK"]})
                    ids[name] = r.json()["id"]
            sql(dsn, "UPDATE api_key SET revoked = true WHERE name = 'wh-revoke'")
            insert_alert(dsn, key="REVK")
            wait_until(lambda: len(receiver.requests) >= 1, 20, "the kept subscription's delivery")
            time.sleep(1.0)
        got = [json.loads(r["body"])["subscription_id"] for r in receiver.requests]
        assert got == [ids["keep"]]
    finally:
        receiver.close()


# --- 6. bounded resources ------------------------------------------------------------------
def test_unknown_http_methods_share_one_metrics_label(client):
    # invented names are refused by the HTTP parser (httptools: 400) or reach the app (h11);
    # methods the parser knows but the API does not (WebDAV's PROPFIND, PURGE) reach the app
    for method in ("FOOBAR", "BREW", "X" * 50, "PROPFIND", "PURGE"):
        assert client.request(method, "/v1/events").status_code in (400, 405, 501)
    text = client.get("/metrics").text
    assert not any(m in text for m in ("FOOBAR", "BREW", "PROPFIND", "PURGE")) and 'method="other"' in text


def test_a_large_body_is_413_before_it_is_parsed(client, dsn):
    key = make_key(dsn, "subscribe")
    body = b'{"name": "' + b"a" * (16 * 1024 * 1024) + b'"}'
    r = client.post("/v1/subscriptions", content=body, headers={"X-API-Key": key, "Content-Type": "application/json"})
    assert r.status_code == 413 and "detail" in r.json()


def test_streams_are_capped_per_key_and_per_client(db_url, dsn):
    key = make_key(dsn, "read")
    with ApiServer(api_settings(db_url, api_max_streams_per_key=2, api_max_streams_per_client=3)) as server:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            with c.stream("GET", "/v1/stream/alerts", headers={"X-API-Key": key}) as a, \
                    c.stream("GET", "/v1/stream/alerts", headers={"X-API-Key": key}) as b:
                assert a.status_code == b.status_code == 200
                r = c.get("/v1/stream/alerts", headers={"X-API-Key": key})
                assert r.status_code == 429 and "streams" in r.json()["detail"] and r.headers["retry-after"]
                with c.stream("GET", "/v1/stream/alerts") as anon:  # per client: 2 keyed + 1 anonymous
                    assert anon.status_code == 200
                    assert c.get("/v1/stream/alerts").status_code == 429
            wait_until(lambda: sse_clients(c) == 0, 5, "streams closed")
            with c.stream("GET", "/v1/stream/alerts", headers={"X-API-Key": key}) as again:  # slots come back
                assert again.status_code == 200


def sse_clients(c: httpx.Client) -> float:
    line = next(x for x in c.get("/metrics").text.splitlines() if x.startswith("finsent_api_sse_clients "))
    return float(line.split()[1])


def test_a_closed_websocket_is_noticed_before_the_keepalive(db_url):
    with ApiServer(api_settings(db_url, sse_keepalive_s=60)) as server, server.client() as c:
        async def go():
            async with websockets.connect(f"ws://{server.url[7:]}/v1/stream/alerts/ws"):
                wait_until(lambda: sse_clients(c) == 1, 5, "stream open")
        asyncio.run(go())
        wait_until(lambda: sse_clients(c) == 0, 3, "closed websocket noticed")


def test_the_subscription_cap_holds_under_concurrent_creates(db_url, dsn):
    key = make_key(dsn, "subscribe")
    with ApiServer(api_settings(db_url, api_max_subscriptions_per_key=3)) as server:
        async def go():
            async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as c:
                return await asyncio.gather(*(c.post("/v1/subscriptions", json={"name": f"s{i}", "delivery": "stream"})
                                              for i in range(12)))
        statuses = sorted(r.status_code for r in asyncio.run(go()))
    assert statuses.count(201) == 3 and all(s in (201, 409) for s in statuses), statuses
    assert sql(dsn, "SELECT count(*) FROM subscription s JOIN api_key k ON k.id = s.api_key_id "
                    "WHERE k.key_hash = encode(sha256(%s::bytea), 'hex')", key.encode()) == [(3,)]


# --- 7. series end inside a minute -------------------------------------------------------
def test_series_counts_exactly_the_span_it_reports(client, dsn):
    minute = NOW - timedelta(minutes=30)
    seed(dsn, [event(70_000, source="end", tickers=("ENDS",), at=minute + timedelta(seconds=10)),
               event(70_001, source="end", tickers=("ENDS",), at=minute + timedelta(seconds=50))])
    for bucket in ("1m", "5m", "1h"):
        r = client.get("/v1/series", params={"key": "ENDS", "bucket": bucket, "start": (minute - timedelta(hours=2)).isoformat(),
                                             "end": (minute + timedelta(seconds=30)).isoformat()})
        body = r.json()
        raw = sql(dsn, "SELECT count(*) FROM scored_event WHERE 'ENDS' = ANY(tickers) AND published_at >= %s "
                       "AND published_at < %s", body["start"], body["end"])[0][0]
        assert sum(body["series"][0]["n"]) == raw == 2, (bucket, body["start"], body["end"])
        assert len(body["series"][0]["t"]) * {"1m": 60, "5m": 300, "1h": 3600}[bucket] == \
            (pd(body["end"]) - pd(body["start"])).total_seconds()


def test_movers_window_ends_on_a_minute(client):
    r = client.get("/v1/movers", params={"end": (NOW + timedelta(seconds=30)).isoformat()})
    assert r.status_code == 200
    assert pd(r.json()["window_end"]) == NOW + timedelta(minutes=1)


def pd(s: str):
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


# --- 8. smaller -------------------------------------------------------------------------------
def test_csv_export_escapes_formulas(client, dsn):
    seed(dsn, [event(80_000, source="csv", text="=HYPERLINK(\"http://evil\")")])
    key = make_key(dsn, "feedback", name="@attacker")
    for note in ("=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "plain"):
        r = client.post("/v1/events/csv/e80000/feedback", json={"sentiment": "negative", "note": note},
                        headers={"X-API-Key": key})
        assert r.status_code == 201
    text = client.get("/v1/feedback/export", params={"format": "csv"}, headers={"X-API-Key": key}).text
    import csv
    import io
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["source"] == "csv"]
    assert {r["note"] for r in rows} == {"'=1+2", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "plain"}
    assert all(r["text"].startswith("'=") and r["created_by"] == "'@attacker" for r in rows)
    jsonl = client.get("/v1/feedback/export", headers={"X-API-Key": key}).text  # JSON lines stay as stored
    assert '"note": "=1+2"' in jsonl


def test_with_reads_closed_docs_and_metrics_policy(db_url, dsn):
    reader = make_key(dsn, "read")
    with ApiServer(api_settings(db_url, api_reads_open=False)) as server, server.client() as c:
        assert c.get("/openapi.json").status_code == 200 and c.get("/docs").status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": reader}).status_code == 200


# --- rate limits ------------------------------------------------------------------------------
def test_rate_limit_per_key_with_retry_after(db_url, dsn):
    a, b = make_key(dsn, "read"), make_key(dsn, "read")
    with ApiServer(api_settings(db_url, api_rate_limit_per_s=0.2, api_rate_burst=3)) as server:
        with server.client(a) as c:
            statuses = [c.get("/v1/alerts").status_code for _ in range(5)]
            assert statuses[:3] == [200] * 3 and statuses[3:] == [429] * 2, statuses
            r = c.get("/v1/alerts")
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "rate limit" in r.json()["detail"]
            assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200  # probes are exempt
        with server.client(b) as c:  # another key has its own budget
            assert c.get("/v1/alerts").status_code == 200
        with server.client() as c:  # anonymous callers count per address
            assert [c.get("/v1/alerts").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_invented_keys_do_not_escape_the_rate_limit(db_url, dsn):
    good = make_key(dsn, "read")
    with ApiServer(api_settings(db_url, api_rate_limit_per_s=0.2, api_rate_burst=3)) as server, server.client() as c:
        statuses = [c.get("/v1/alerts", headers={"X-API-Key": f"fsk_invented_{i}"}).status_code for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429], statuses
        assert c.get("/v1/alerts", headers={"X-API-Key": good}).status_code == 429  # the address is out of budget
        assert c.get("/v1/alerts").status_code == 200  # anonymous reads have their own budget


def test_rate_limiter_refills_at_its_rate():
    from api.limits import RateLimiter
    limiter = RateLimiter(rate=2, burst=2, max_clients=3)
    assert [limiter.wait("k", 0.0) for _ in range(3)] == [0, 0, 0.5]
    assert limiter.wait("k", 0.5) == 0 and limiter.wait("k", 0.5) == pytest.approx(0.5)
    for who in ("a", "b", "c"):
        limiter.wait(who, 1.0)
    assert "k" not in limiter.tat and len(limiter.tat) == 3  # memory is bounded


def test_a_chunked_body_over_the_limit_is_413(db_url, dsn):
    key = make_key(dsn, "subscribe")

    def chunks():
        yield b'{"name": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'"}'
    with ApiServer(api_settings(db_url, api_max_body_bytes=32 * 1024)) as server, server.client(key) as c:
        r = c.post("/v1/subscriptions", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "larger than 32768 bytes" in r.json()["detail"]
        assert c.post("/v1/subscriptions", json={"name": "small", "delivery": "stream"}).status_code == 201


@pytest.mark.parametrize("url", [
    "/v1/events?min_score=nan", "/v1/events?max_score=inf", "/v1/events?min_score=-Infinity",
    "/v1/events?q=%ED%A0%80", "/v1/events?source=%ED%A0%80x", "/v1/events?model_version=%F0%9F",
    "/v1/series?key=%ED%A0%80", "/v1/alerts?key=%ED%B0%80", "/v1/events/%ED%A0%80/e1/explain",
    "/v1/events/news/%ED%A0%80/feedback", "/v1/events?start=1e400", "/v1/events?start=nan",
    "/v1/events?end=9999999999999999999999", "/v1/movers?end=-1e30", "/v1/alerts/1e400",
    "/v1/events?cursor=%ED%A0%80", "/v1/stream/alerts?last_event_id=nan",
])
def test_query_and_path_garbage_is_4xx(client, dsn, url):
    key = make_key(dsn, "admin")
    method = "POST" if url.endswith("feedback") else "GET"
    r = client.request(method, url, headers={"X-API-Key": key}, json={"sentiment": "negative"} if method == "POST"
                       else None, timeout=10)
    assert 400 <= r.status_code < 500 or (r.status_code == 200 and "explain" not in url), (url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert "Error" not in r.text


@pytest.mark.parametrize("headers", [{"Last-Event-ID": "\xb2"}, {"Last-Event-ID": "-1"}, {"X-API-Key": "\xff\xfe"},
                                     {"Authorization": "Bearer \xb2\xb3"}, {"Last-Event-ID": "9" * 40}])
def test_header_garbage_is_4xx(client, headers):
    r = client.get("/v1/stream/alerts", headers={k: v.encode("latin-1") for k, v in headers.items()}, timeout=10)
    assert 400 <= r.status_code < 500 and "detail" in r.json(), (headers, r.status_code, r.text)


def test_a_trailing_slash_redirect_names_the_path_not_the_clients_host(client):
    """Was: '/v1/events/' redirected to http://<whatever the Host header said>/v1/events."""
    r = client.get("/v1/events/", params={"source": "a b"}, headers={"Host": "evil.example"},
                   follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/v1/events?source=a+b"
    assert client.get("/health/", follow_redirects=True).status_code == 200  # a client follows it to /health
