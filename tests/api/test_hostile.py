"""Hostile input at every route and parameter of the OpenAPI schema, generated (hypothesis): the
kinds of the outside check with values of hypothesis' choosing. Times that overflow on conversion
to UTC or lie outside 1970-2200, lone surrogates (percent-encoded in URLs, escaped in JSON),
NaN / Infinity / numbers that overflow, forged and altered cursors, webhook targets that reach a
private IPv4 address through any IPv6 embedding (mapped, compatible, SIIT, NAT64 /96 and the
local-use 64:ff9b:1::/48, 6to4, Teredo server or client) or through a name or numeric form that
resolves to one, unknown HTTP methods, bodies over the limit, and CSV formula cells. Every answer
is a 4xx or a 2xx, never a 5xx, and an error carries a message (`detail`)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import ipaddress
import json
import os
import random
import string
from urllib.parse import unquote_to_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import webhooks
from api.main import create_app
from core.settings import Settings
from tests.api.conftest import ApiServer, api_settings, event, make_key, seed

pytestmark = pytest.mark.slow
BODY_LIMIT = 64 * 1024
# FINSENT_HOSTILE_EXAMPLES=500 for a longer hunt
EXAMPLES = settings(max_examples=int(os.environ.get("FINSENT_HOSTILE_EXAMPLES", "40")), deadline=None, suppress_health_check=list(HealthCheck), database=None)

# --- the kinds ----------------------------------------------------------------------------------
PRIVATE_V4 = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
              "0.0.0.0/8", "198.18.0.0/15", "192.0.0.0/24", "240.0.0.0/4", "224.0.0.0/4"]


@st.composite
def private_v4(draw) -> ipaddress.IPv4Address:
    net = ipaddress.ip_network(draw(st.sampled_from(PRIVATE_V4)))
    return net[draw(st.integers(0, net.num_addresses - 1))]


def embed(form: str, v4: ipaddress.IPv4Address, r: random.Random) -> ipaddress.IPv6Address:
    a = int(v4)
    if form == "mapped":  # ::ffff:a.b.c.d
        return ipaddress.IPv6Address((0xFFFF << 32) | a)
    if form == "compatible":  # ::a.b.c.d
        return ipaddress.IPv6Address(a)
    if form == "siit":  # ::ffff:0:a.b.c.d
        return ipaddress.IPv6Address((0xFFFF << 48) | a)
    if form == "nat64":  # 64:ff9b::/96
        return ipaddress.IPv6Address((0x0064FF9B << 96) | a)
    if form == "nat64-local":  # 64:ff9b:1::/48, RFC 6052 /48 layout: 16 bits, the u octet, 16 bits
        return ipaddress.IPv6Address((0x0064FF9B0001 << 80) | ((a >> 16) << 64) | ((a & 0xFFFF) << 40)
                                     | r.getrandbits(40))
    if form == "6to4":  # 2002:AABB:CCDD::/48
        return ipaddress.IPv6Address((0x2002 << 112) | (a << 80) | r.getrandbits(80))
    if form == "teredo-client":  # 2001:0:server:flags:~port:~client
        server = r.getrandbits(32)
        return ipaddress.IPv6Address((0x20010000 << 96) | (server << 64) | (r.getrandbits(32) << 32) | (a ^ 0xFFFFFFFF))
    if form == "teredo-server":
        return ipaddress.IPv6Address((0x20010000 << 96) | (a << 64) | r.getrandbits(64))
    raise AssertionError(form)


FORMS = ["mapped", "compatible", "siit", "nat64", "nat64-local", "6to4", "teredo-client", "teredo-server"]


@st.composite
def private_target(draw) -> str:
    """A webhook URL whose host reaches a private address, by an IPv6 embedding or otherwise."""
    v4, r = draw(private_v4()), random.Random(draw(st.integers(0, 2**32)))
    kind = draw(st.sampled_from([*FORMS, "v4", "name", "numeric"]))
    if kind == "v4":
        host = str(v4)
    elif kind == "name":  # names this machine resolves to loopback
        host = draw(st.sampled_from(["localhost", "localhost.", "LOCALHOST", "vm", "runsc"]))
    elif kind == "numeric":  # inet_aton forms a resolver accepts: one number, hex, octal, short
        a = int(v4)
        host = draw(st.sampled_from([str(a), hex(a), f"0{a:o}", f"{a >> 24}.{a & 0xFFFFFF}"]))
    else:
        ip = embed(kind, v4, r)
        text = str(ip) if draw(st.booleans()) else ip.exploded
        if kind in ("mapped", "compatible", "siit") and draw(st.booleans()):
            # the last 32 bits written as dotted v4 ('::ffff:10.0.0.1'); from the exploded form, since
            # the compressed one may have no groups left to replace ('::' for 0.0.0.0 compatible)
            text = ":".join(ip.exploded.split(":")[:6]) + ":" + str(v4)
        host = f"[{text}]"
    port = draw(st.sampled_from(["", ":443", ":8443", ":1"]))
    return f"https://{host}{port}/{draw(st.text(string.ascii_letters, max_size=8))}"


@st.composite
def overflowing_time(draw) -> str:
    """Times that overflow when converted to UTC, or lie outside 1970-2200 (400, not 500)."""
    hours = draw(st.integers(1, 14))
    kind = draw(st.sampled_from(["early", "late", "outside", "naive-edge"]))
    if kind == "early":  # year 1, before `hours` o'clock, at +hours: before datetime.min in UTC
        return f"0001-01-01T{draw(st.integers(0, hours - 1)):02d}:{draw(st.integers(0, 59)):02d}:00+{hours:02d}:00"
    if kind == "late":  # year 9999, in its last `hours` hours, at -hours: after datetime.max in UTC
        return f"9999-12-31T{draw(st.integers(24 - hours, 23)):02d}:{draw(st.integers(0, 59)):02d}:59-{hours:02d}:00"
    if kind == "outside":
        year = draw(st.one_of(st.integers(1, 1969), st.integers(2201, 9999)))
        return f"{year:04d}-{draw(st.integers(1, 12)):02d}-01T00:00:00{draw(st.sampled_from(['', 'Z', '+14:00']))}"
    return draw(st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59.999999", "0001-01-01",
                                 "9999-12-31T23:59:59+00:00"]))


def surrogate_url() -> st.SearchStrategy[str]:
    """A lone surrogate as a URL carries it: its 3-byte (CESU) form, percent-encoded."""
    def enc(cp: int) -> str:
        b = bytes([0xE0 | cp >> 12, 0x80 | (cp >> 6) & 0x3F, 0x80 | cp & 0x3F])
        return "".join(f"%{x:02X}" for x in b)
    return st.tuples(st.text(string.ascii_letters, max_size=3), st.integers(0xD800, 0xDFFF)).map(
        lambda t: t[0] + enc(t[1]))


def forged_cursor(draw_values) -> st.SearchStrategy[str]:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    values = st.lists(st.one_of(overflowing_time(), st.integers(-2**70, 2**70), st.text(max_size=10),
                                st.floats(allow_nan=True), st.none(), st.just("1970-01-01T00:00:00+00:00"),
                                st.just("2199-12-31T00:00:00+00:00")), max_size=6)
    return st.one_of(
        values.map(lambda v: b64(json.dumps(v).encode())),  # unsigned
        st.tuples(values, st.binary(min_size=1, max_size=16)).map(lambda t: b64(json.dumps(t[0]).encode()) + "."
                                                                  + b64(t[1])),  # a made-up signature
        st.binary(max_size=40).map(lambda b: b64(b) + "." + b64(b[::-1])),
        st.just("."), st.just("...."), st.just("%00"))


URL_VALUES = st.one_of(overflowing_time().map(lambda t: t.replace("+", "%2B")), surrogate_url(),
                       st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e400", "-1e400", "9" * 40, "-9" * 20,
                                        "%00", "0x10", "", "%FF%FE", "1_000", "١٢٣"]),
                       forged_cursor(None), private_target().map(lambda u: u.replace("[", "%5B").replace("]", "%5D")))
# raw JSON tokens for a body field: non-finite numbers, lone surrogates, overflowing times, private targets
JSON_TOKENS = st.one_of(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "[NaN]", "[1e400]",
                                         '{"a": Infinity}']),
                        st.integers(0xD800, 0xDFFF).map(lambda cp: f'"x\\u{cp:04x}"'),
                        st.integers(0xD800, 0xDFFF).map(lambda cp: f'["\\u{cp:04x}"]'),
                        overflowing_time().map(json.dumps), private_target().map(json.dumps),
                        st.integers(-2**80, 2**80).map(str))

# --- the routes, from the schema --------------------------------------------------------------
SCHEMA = create_app(Settings()).openapi()
OPERATIONS = [(method.upper(), path, op) for path, ops in SCHEMA["paths"].items() for method, op in ops.items()]
MINIMAL_BODY = {"SubscriptionCreate": {"name": "n", "delivery": "stream"}, "SubscriptionUpdate": {"name": "n"},
                "ScoreRequest": {"texts": ["Acme shares slump"]}, "FeedbackCreate": {"sentiment": "negative"}}


def body_schema(op) -> tuple[str, list[str]] | None:
    ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    if not ref:
        return None
    name = ref.rsplit("/", 1)[1]
    return name, list(SCHEMA["components"]["schemas"][name]["properties"])


@pytest.fixture(scope="module")
def hostile(db_url, dsn):
    """An API with the production defaults that matter here: no private or http webhook targets,
    a small body limit, reads open; an admin key; a stored event for the per-event routes."""
    seed(dsn, [event(1, source="news")])
    key = make_key(dsn, "admin")
    with ApiServer(api_settings(db_url, webhook_allow_private=False, webhook_allow_http=False,
                                api_max_body_bytes=BODY_LIMIT)) as server:
        with server.client(key) as c:
            yield c


def fill(path: str, values: dict[str, str]) -> str:
    for name in [p[1:-1] for p in path.split("/") if p.startswith("{")]:
        path = path.replace("{" + name + "}", values.get(name, {"source": "news", "event_id": "e1"}.get(name, "1")))
    return path


def check(r: httpx.Response, what) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), (what, r.headers, r.text[:200])
        assert r.json().get("detail"), (what, r.text[:200])


def send(c: httpx.Client, method: str, url: str, **kw) -> httpx.Response:
    if url.startswith("/v1/stream/"):  # an accepted stream never ends: read its status, then hang up
        with c.stream(method, url, timeout=10, **kw) as r:
            if r.status_code >= 400:
                r.read()
            return r
    return c.request(method, url, timeout=30, **kw)


# routes without parameters (/health, /ready, /metrics, /v1/subscriptions, /v1/score) get the body
# and method tests below
PARAM_OPERATIONS = [(m, p, op) for m, p, op in OPERATIONS if op.get("parameters")]


@pytest.mark.parametrize("method, path, op", PARAM_OPERATIONS, ids=[f"{m} {p}" for m, p, _ in PARAM_OPERATIONS])
@EXAMPLES
@given(data=st.data())
def test_hostile_parameters_never_5xx(hostile, method, path, op, data):
    params = [p for p in op.get("parameters", []) if p["in"] in ("query", "path", "header")]
    chosen = data.draw(st.sampled_from(params))
    value = data.draw(URL_VALUES)
    paths = {chosen["name"]: value} if chosen["in"] == "path" else {}
    url = fill(path, paths)
    body = MINIMAL_BODY.get((body_schema(op) or ("",))[0])
    if chosen["in"] == "query":
        url += "?" + chosen["name"] + "=" + value.replace("&", "%26").replace("#", "%23").replace(" ", "%20")
    headers = {}
    if chosen["in"] == "header":
        # as raw bytes (latin-1 to the server); control bytes cannot travel in a header at all
        headers[chosen["name"]] = bytes(b for b in unquote_to_bytes(value) if b >= 0x20 and b != 0x7F)
    check(send(hostile, method, url, json=body, headers=headers), (method, url, headers))


BODY_OPERATIONS = [(m, p, op) for m, p, op in OPERATIONS if body_schema(op)]


@pytest.mark.parametrize("method, path, op", BODY_OPERATIONS, ids=[f"{m} {p}" for m, p, _ in BODY_OPERATIONS])
@EXAMPLES
@given(data=st.data())
def test_hostile_json_bodies_never_5xx(hostile, method, path, op, data):
    name, fields = body_schema(op)
    field = data.draw(st.sampled_from(fields))
    token = data.draw(JSON_TOKENS)
    base = {**MINIMAL_BODY[name], field: "\x00MARK\x00"}
    if name == "SubscriptionCreate" and field == "url":
        base["delivery"] = "webhook"
    raw = json.dumps(base).replace(json.dumps("\x00MARK\x00"), token).encode("utf-8", "surrogatepass")
    made = None
    if "{sub_id}" in path:  # a subscription of this key to change, removed afterwards (the per-key cap)
        created = hostile.post("/v1/subscriptions", json={"name": "h", "delivery": "stream"})
        assert created.status_code == 201, created.text
        made = created.json()["id"]
    url = fill(path.replace("{sub_id}", str(made)), {})
    try:
        r = send(hostile, method, url, content=raw, headers={"Content-Type": "application/json"})
        check(r, (method, url, raw[:200]))
        if name == "SubscriptionCreate" and field == "url" and token.startswith('"https://'):
            # a private target: refused, whatever the form
            assert r.status_code == 422 and "not allowed" in json.dumps(r.json()), (token, r.text[:300])
        if r.status_code < 300 and made is None and path == "/v1/subscriptions":
            made = r.json()["id"]
    finally:
        if made is not None:
            hostile.delete(f"/v1/subscriptions/{made}")


@EXAMPLES
@given(target=private_target())
def test_private_webhook_targets_refused_in_every_form(target):
    with pytest.raises(webhooks.UnsafeTarget) as err:
        asyncio.run(webhooks.resolve(target, allow_http=False, allow_private=False))
    assert str(err.value) == webhooks.NOT_ALLOWED  # one message: no address, no DNS oracle


STANDARD = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}


@EXAMPLES
@given(method=st.text(string.ascii_uppercase + "-_!", min_size=1, max_size=20).filter(lambda m: m not in STANDARD),
       op=st.sampled_from(OPERATIONS))
def test_unknown_methods_are_4xx(hostile, method, op):
    r = hostile.request(method, fill(op[1], {}), timeout=10)
    # the router's 405 (JSON), or the HTTP parser's 400 for a method it does not know (plain text)
    assert 400 <= r.status_code < 500 and r.text.strip(), (method, op[1], r.status_code, r.text[:200])


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(size=st.integers(BODY_LIMIT + 1, 8 * BODY_LIMIT), op=st.sampled_from(BODY_OPERATIONS),
       chunked=st.booleans())
def test_bodies_over_the_limit_are_413(hostile, size, op, chunked):
    body = b'{"texts": ["' + b"a" * size + b'"]}'
    content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    url = fill(op[1], {"sub_id": "1"})
    r = hostile.request(op[0], url, content=content, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["detail"], (url, r.status_code, r.text[:200])


@EXAMPLES
@given(prefix=st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", " =", "\t=", "\u00a0+", "\uff1d", " \uff20"]),
       rest=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30))
def test_csv_export_defuses_formula_cells(hostile, prefix, rest):
    note = prefix + rest
    r = hostile.post("/v1/events/news/e1/feedback", json={"sentiment": "negative", "note": note})
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    out = hostile.get("/v1/feedback/export", params={"format": "csv"})
    assert out.status_code == 200
    row = next(x for x in csv.DictReader(io.StringIO(out.text)) if x["id"] == str(fid))
    assert row["note"] == "'" + note, (note, row["note"])
