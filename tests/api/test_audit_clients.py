"""An outside audit as careless and hostile clients: webhook receivers and URLs that must not stop
delivery to other subscribers (a receiver that dribbles its answer, a stored URL the HTTP client
cannot send, a subscription deleted while its delivery is in flight), a host lookup that never
answers, and a client that stops reading its answer."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import asyncpg
import httpx
import pytest

from api import webhooks
from api.delivery import Deliverer
from api.live import AlertHub
from tests.api.conftest import ApiServer, api_settings, event, insert_alert, make_key, seed, sql, wait_until
from tests.api.test_subscriptions_webhooks import Receiver

pytestmark = pytest.mark.slow


class Dribbler:
    """A webhook receiver that starts a 200 answer and then sends one header line a second, for a
    minute: each read gets a byte well within any per-read timeout, the answer never ends."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._dribble, args=(conn,), daemon=True).start()

    @staticmethod
    def _dribble(conn):
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for _ in range(60):
                    conn.sendall(b"X-Wait: 1\r\n")
                    time.sleep(1)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def _webhook(c: httpx.Client, name: str, url: str, ticker: str) -> int:
    r = c.post("/v1/subscriptions", json={"name": name, "delivery": "webhook", "url": url,
                                          "key_types": ["ticker"], "tickers": [ticker]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _log(c: httpx.Client, sub_id: int) -> list[dict]:
    return c.get(f"/v1/subscriptions/{sub_id}/deliveries").json()["items"]


def test_a_receiver_that_dribbles_its_answer_holds_up_no_other_subscriber(api, dsn):
    """Was: httpx's timeout bounds each read, so a receiver answering a byte a second held its
    send forever, and the deliverer waited for every send of a round before the next: no
    subscriber of the process got another webhook. Now each attempt is bounded as a whole
    (webhook_timeout_s, 2 s here) and a slow one holds up nobody else."""
    key = make_key(dsn, "subscribe")
    slow, good = Dribbler(), Receiver()
    try:
        with api.client(key) as c:
            slow_id = _webhook(c, "dribbler", slow.url, "DRIB")
            _webhook(c, "prompt", good.url, "PRMPT")
            insert_alert(dsn, key="DRIB")
            wait_until(lambda: slow.connections >= 1, 10, "the dribbling receiver is called")
            t0 = time.monotonic()
            insert_alert(dsn, key="PRMPT")
            wait_until(lambda: good.requests, 10, "the other subscriber's webhook")
            assert time.monotonic() - t0 < 1.5  # not after the dribbler's attempt ends
            wait_until(lambda: _log(c, slow_id), 10, "the dribbler's attempt ends")
            assert _log(c, slow_id)[0]["error"] == "timed out"
    finally:
        slow.close()
        good.server.shutdown()


def test_a_stored_url_the_http_client_cannot_send_does_not_stop_the_deliverer(api, dsn):
    """Was: a webhook URL with a control character passed the checks (201), and at delivery the
    HTTP client's InvalidURL escaped the deliverer's loop: its task died, and no subscriber of the
    process got a webhook again. Now such a URL is a 422, and one stored before (or any error of
    one delivery) is that delivery's failure."""
    key = make_key(dsn, "subscribe")
    good = Receiver()
    try:
        with api.client(key) as c:
            bad_id = _webhook(c, "bad", "http://127.0.0.1:9/x", "BADURL")
            sql(dsn, "UPDATE subscription SET target_url = %s WHERE id = %s", "http://127.0.0.1:9/a\x07b", bad_id)
            _webhook(c, "good", good.url, "GOODURL")
            insert_alert(dsn, key="BADURL")
            wait_until(lambda: _log(c, bad_id), 10, "the bad URL's attempt is logged")
            assert _log(c, bad_id)[0]["error"].startswith("refused target: the URL must be printable ASCII")
            insert_alert(dsn, key="GOODURL")
            wait_until(lambda: good.requests, 10, "the next subscriber's webhook")
            for url in ("http://127.0.0.1:9/a\x07b", "http://127.0.0.1:9/a\r\nX-Evil: 1", "http://bücher.example/",
                        "http://127.0.0.1:9/a b"):
                r = c.post("/v1/subscriptions", json={"name": "bad", "delivery": "webhook", "url": url})
                assert r.status_code == 422 and "printable ASCII" in r.text, (url, r.status_code, r.text)
    finally:
        good.server.shutdown()


def test_an_attempt_whose_subscription_was_deleted_meanwhile_is_not_an_error(api, db_url, dsn):
    """Was: deleting a subscription while its webhook was in flight took the delivery row with it,
    and writing the attempt then failed on the foreign key (the deliverer's round aborted)."""
    key = make_key(dsn, "subscribe")
    with api.client(key) as c:
        sub_id = _webhook(c, "gone", "http://127.0.0.1:9/x", "GONE")
    sql(dsn, "UPDATE subscription SET enabled = false WHERE id = %s", sub_id)  # the API's own deliverer keeps off
    _, event_id = insert_alert(dsn, key="NOTGONE")
    ((delivery_id,),) = sql(dsn, "INSERT INTO delivery (alert_event_id, subscription_id) VALUES (%s, %s) RETURNING id",
                            event_id, sub_id)
    row = {"id": delivery_id, "subscription_id": sub_id, "attempts": 1}
    sql(dsn, "DELETE FROM subscription WHERE id = %s", sub_id)

    async def attempt():
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            d = Deliverer(pool, api_settings(db_url), AlertHub(pool, dsn))
            await d._failed(row, None, "connection failed", 1.0)
            await d._delivered(row, 200, 1.0)
        finally:
            await pool.close()
    asyncio.run(attempt())
    assert sql(dsn, "SELECT count(*) FROM delivery_attempt WHERE delivery_id = %s", delivery_id) == [(0,)]


def test_a_host_lookup_that_never_answers_is_bounded(api, dsn, monkeypatch):
    """Was: the webhook URL's host lookup had no bound of its own (a name server that never
    answers held the request for as long as the resolver tried, on the event loop's default
    threads). Now it waits at most RESOLVE_TIMEOUT_S, then the target is not allowed."""
    real = socket.getaddrinfo

    def slow(host, *args, **kwargs):
        if host == "never-answers.example":
            time.sleep(8)
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", slow)
    monkeypatch.setattr(webhooks, "RESOLVE_TIMEOUT_S", 0.5, raising=False)
    key = make_key(dsn, "subscribe")
    with api.client(key) as c:
        t0 = time.monotonic()
        r = c.post("/v1/subscriptions", json={"name": "dns", "delivery": "webhook",
                                              "url": "http://never-answers.example/hook"}, timeout=5)
        assert r.status_code == 422 and "not allowed" in r.text, r.text
        assert time.monotonic() - t0 < 3


def test_a_client_that_stops_reading_is_cut_off(db_url, dsn):
    """Was: uvicorn buffers a whole answer and never times out a write, so each client that asked
    for a large events page and read nothing pinned the page (megabytes) in the API's memory for
    as long as it kept the connection. Now the answer goes out in pieces and a client that takes
    none for FINSENT_API_SEND_TIMEOUT_S (1 s here) is cut off: it gets what was buffered, then the end."""
    seed(dsn, [event(900_000 + i, source="huge", tickers=("HUGE",), text="y" * 20_000 + str(i)) for i in range(600)])
    with ApiServer(api_settings(db_url, api_send_timeout_s=1.0)) as server:
        host, port = server.url.removeprefix("http://").split(":")
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, int(port)))
        try:
            s.sendall(b"GET /v1/events?source=huge&limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(3)  # reads nothing
            s.settimeout(10)
            data = b""
            while chunk := s.recv(1 << 20):
                data += chunk
        finally:
            s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        assert length > 12_000_000 and len(body) < length - 4_000_000, (length, len(body))
        with server.client() as c:  # the API goes on answering
            assert c.get("/v1/events", params={"source": "huge", "limit": 5}).status_code == 200
