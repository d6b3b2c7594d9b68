"""Clients that send slowly or not at all. uvicorn times out a connection only between requests: one
that connected and sent nothing, or sent its request head a byte at a time (slowloris), or its body a
byte at a time, stayed open for good, and enough of them use up the API's file descriptors. Now a
request head must be in within FINSENT_API_HEADER_TIMEOUT_S and a body within
FINSENT_API_BODY_TIMEOUT_S (408, connection closed), while streams and honest slow clients go on."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.api.conftest import ApiServer, api_settings, make_key

pytestmark = pytest.mark.slow

HEAD_S, BODY_S = 0.6, 1.0


@pytest.fixture(scope="module")
def server(db_url):
    with ApiServer(api_settings(db_url, api_header_timeout_s=HEAD_S, api_body_timeout_s=BODY_S,
                                sse_keepalive_s=0.3)) as s:
        yield s


def connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def dribble(s: socket.socket, data: bytes, every_s: float, for_s: float) -> float:
    """Send `data` a byte every `every_s` until the server closes or `for_s` passes: when it closed."""
    t0 = time.monotonic()
    for b in data:
        if time.monotonic() - t0 > for_s:
            break
        try:
            s.send(bytes([b]))
        except OSError:
            break
        time.sleep(every_s)
    return time.monotonic() - t0


def cuts(c: httpx.Client, phase: str) -> float:
    line = next(x for x in c.get("/metrics").text.splitlines()
                if x.startswith(f'finsent_api_client_cuts_total{{phase="{phase}"}}'))
    return float(line.split()[1])


def status_and_json(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_a_connection_that_sends_nothing_is_closed_with_408(server):
    with server.client() as c:
        before = cuts(c, "header")
    s = connect(server)
    t0 = time.monotonic()
    data = read_all(s)  # returns when the server closes
    took = time.monotonic() - t0
    s.close()
    assert HEAD_S * 0.8 < took < HEAD_S + 3, took
    code, body = status_and_json(data)
    assert code == 408 and "request head" in body["detail"]
    with server.client() as c:
        assert cuts(c, "header") == before + 1


def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_deadline_while_others_are_served(server):
    s = connect(server)
    s.settimeout(0.05)
    head = b"GET /v1/events HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 400 + b"\r\n\r\n"
    t0 = time.monotonic()
    with server.client() as c:  # another client meanwhile
        assert c.get("/health").status_code == 200
    for b in head:  # a byte every 20 ms: each arrives long before any per-read timeout would fire
        try:
            s.send(bytes([b]))
            if s.recv(65536) == b"":
                break
        except TimeoutError:
            pass
        except OSError:
            break
        if time.monotonic() - t0 > 10:
            break
    took = time.monotonic() - t0
    s.close()
    assert took < HEAD_S + 3, f"the trickling head held its connection {took:.1f} s"


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_head(server):
    s = connect(server)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(65536)
    assert b" 200 " in first.split(b"\r\n")[0]
    s.sendall(b"GET /health HTTP/1.1\r\nHo")  # and then nothing
    t0 = time.monotonic()
    data = read_all(s)
    took = time.monotonic() - t0
    s.close()
    assert took < HEAD_S + 3 and status_and_json(data)[0] == 408


def test_a_body_sent_a_byte_at_a_time_is_408_and_an_honest_slow_body_passes(server, dsn):
    key = make_key(dsn, "subscribe")
    body = json.dumps({"name": "slow", "delivery": "stream", "key_types": ["topic"]}).encode()
    head = (f"POST /v1/subscriptions HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with server.client() as c:
        before = cuts(c, "body")
    s = connect(server)
    s.sendall(head)
    took = dribble(s, body, every_s=0.1, for_s=10)  # would take len(body) / 10 s
    data = read_all(s)
    s.close()
    code, answer = status_and_json(data)
    assert code == 408 and "body" in answer["detail"], data
    assert took < BODY_S + 3
    with server.client() as c:
        assert cuts(c, "body") == before + 1

    s = connect(server)  # the same body in three pieces within the deadline: created
    s.sendall(head)
    for i in range(3):
        s.sendall(body[i * len(body) // 3:(i + 1) * len(body) // 3])
        time.sleep(BODY_S / 5)
    first = s.recv(65536)
    s.close()
    assert b" 201 " in first.split(b"\r\n")[0], first


def test_a_live_stream_outlasts_both_deadlines(server):
    """The body deadline bounds reading the body, not Starlette's wait for a disconnect under a
    streamed answer: an SSE client keeps its stream well past both deadlines."""
    with httpx.Client(base_url=server.url, timeout=10) as c, c.stream("GET", "/v1/stream/alerts") as r:
        assert r.status_code == 200
        t0, lines = time.monotonic(), 0
        for _ in r.iter_lines():
            lines += 1
            if time.monotonic() - t0 > 3 * (HEAD_S + BODY_S):
                break
        assert time.monotonic() - t0 > 3 * (HEAD_S + BODY_S) and lines >= 5
