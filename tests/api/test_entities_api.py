"""Entities in the API (issue 19): events carry their entities; `ticker=` uses entity rows at or
above a relevance (a passing mention does not match by default); the directory search and a
ticker's page; a subscription's min_relevance decides which ticker alerts page it; POST
/v1/score links the texts; bad input is a 4xx, never a 500."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.api.conftest import NOW, event, insert_alert, make_key, seed, sql, wait_until
from tests.api.test_subscriptions_webhooks import Receiver, subscribe

pytestmark = pytest.mark.slow
BOEING = "Boeing grounds its 737 MAX fleet after a second crash in five months"
PASSING = ("Fed holds rates steady as inflation cools. Bond yields barely moved and traders shrugged; analysts said "
           "the decision was widely expected, and in other news Boeing said deliveries were on track.")
TWO = "Apple beats, Samsung slides"


def ent(r, ticker, name, relevance, sentiment, score, spans, counted, src="item"):
    return (r[0], r[1], r[2], ticker, name, relevance, sentiment, score, src, json.dumps(spans), ["name"], counted,
            "test-dir")


@pytest.fixture(scope="module")
def stored(dsn):
    at = NOW - timedelta(minutes=1)
    head = event(9001, source="ent", tickers=["BA"], sentiment="negative", at=at, text=BOEING)
    passing = event(9002, source="ent", tickers=[], sentiment="neutral", at=at, text=PASSING)
    two = event(9003, source="ent", tickers=["AAPL", "SSNLF"], sentiment="positive", at=at, text=TWO)
    entities = [ent(head, "BA", "Boeing", 0.75, "negative", -0.7, [[0, 6]], True),
                ent(passing, "BA", "Boeing", 0.343, "neutral", 0.0, [[156, 162]], False),
                ent(two, "AAPL", "Apple Inc.", 0.562, "positive", 0.6, [[0, 5]], True, "item_shared"),
                ent(two, "SSNLF", "Samsung Electronics Co., Ltd.", 0.562, "negative", -0.6, [[13, 20]], True,
                    "entity_head")]
    assert len(seed(dsn, [head, passing, two], entities)) == 3
    return head, passing, two


def ids(r) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["id"] for e in r.json()["items"]}


def test_events_carry_entities_and_ticker_filter_uses_relevance(client, stored):
    assert ids(client.get("/v1/events", params={"ticker": "BA", "source": "ent"})) == {"e9001"}
    assert ids(client.get("/v1/events", params={"ticker": "BA", "min_relevance": 0.5})) == {"e9001"}
    assert ids(client.get("/v1/events", params={"ticker": "BA", "min_relevance": 0.3})) == {"e9001", "e9002"}
    assert ids(client.get("/v1/events", params={"ticker": "BA", "min_relevance": 0.8})) == set()
    assert ids(client.get("/v1/events", params={"ticker": "SSNLF"})) == {"e9003"}
    items = {e["id"]: e for e in client.get("/v1/events", params={"source": "ent"}).json()["items"]}
    assert [(x["ticker"], x["sentiment"], x["spans"]) for x in items["e9003"]["entities"]] == [
        ("AAPL", "positive", [[0, 5]]), ("SSNLF", "negative", [[13, 20]])]
    assert items["e9001"]["entities"][0] == {
        "ticker": "BA", "name": "Boeing", "relevance": 0.75, "sentiment": "negative", "score": -0.7,
        "sentiment_from": "item", "spans": [[0, 6]], "sources": ["name"]}
    assert items["e9002"]["tickers"] == [] and items["e9002"]["entities"][0]["relevance"] < 0.5


@pytest.mark.parametrize("params", [{"ticker": "BA", "min_relevance": 1.5}, {"ticker": "BA", "min_relevance": -1},
                                    {"ticker": "BA", "min_relevance": "high"}])
def test_events_bad_relevance(client, params):
    assert client.get("/v1/events", params=params).status_code == 422


def test_directory_search(client):
    r = client.get("/v1/entities", params={"q": "boeing"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["items"][0]["ticker"] == "BA" and body["directory_version"]
    assert client.get("/v1/entities", params={"q": "Google"}).json()["items"][0]["ticker"] == "GOOGL"
    googl = client.get("/v1/entities", params={"q": "GOOGL"}).json()["items"][0]
    assert set(googl["share_classes"]) >= {"GOOGL", "GOOG"}
    assert client.get("/v1/entities", params={"q": "zzzzqqq nothing"}).json()["items"] == []


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "x" * 101}, {"q": "a", "limit": 0}, {"q": "a", "limit": 101}])
def test_directory_search_bad_input(client, params):
    assert client.get("/v1/entities", params=params).status_code == 422


def test_ticker_page(client, stored):
    r = client.get("/v1/entities/BA")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbol"]["name"] == "Boeing" and body["ticker"] == "BA"
    rec = body["recent"]
    assert (rec["n"], rec["negatives"], rec["passing_mentions"], rec["min_relevance"]) == (1, 1, 1, 0.5)
    assert rec["mean_score"] == pytest.approx(-0.7) and rec["negative_share"] == 1.0
    assert client.get("/v1/entities/ba").json()["ticker"] == "BA"  # as people type it
    assert client.get("/v1/entities/$ba", params={"min_relevance": 0.3}).json()["recent"]["n"] == 2
    quiet = client.get("/v1/entities/MSFT").json()  # in the directory, nothing stored
    assert quiet["recent"]["n"] == 0 and quiet["recent"]["negative_share"] is None
    assert client.get("/v1/entities/ZZZQX").status_code == 404


@pytest.mark.parametrize("path, params, status", [
    ("/v1/entities/a%20b", {}, 422), ("/v1/entities/" + "A" * 20, {}, 422),
    ("/v1/entities/BA", {"min_relevance": 2}, 422),
    ("/v1/entities/BA", {"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, 400),
    ("/v1/entities/BA", {"start": "2024-01-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"}, 400),
    ("/v1/entities/%00", {}, 422),
])
def test_ticker_page_bad_input(client, path, params, status):
    assert client.get(path, params=params).status_code == status


def test_subscription_min_relevance_pages_only_about_the_company(api, dsn, stored):
    receiver = Receiver()
    try:
        with api.client(make_key(dsn, "subscribe")) as c:
            assert c.post("/v1/subscriptions", json={"name": "x", "url": receiver.url, "min_relevance": 1.5}
                          ).status_code == 422
            sub = subscribe(c, receiver.url, "BA", min_relevance=0.7)
            assert sub["min_relevance"] == 0.7
            any_sub = subscribe(c, receiver.url, "BA")
            assert any_sub["min_relevance"] is None
            _, passing_event = insert_alert(dsn, key="BA", samples=("ent/e9002",))  # evidence: a passing mention
            _, about_event = insert_alert(dsn, key="BA", samples=("ent/e9001",))  # evidence: the headline
            wait_until(lambda: len(receiver.requests) >= 3, 10, "webhook deliveries")
            got = sql(dsn, "SELECT subscription_id, alert_event_id FROM delivery WHERE subscription_id = ANY(%s)",
                      [sub["id"], any_sub["id"]])
            assert sorted(got) == sorted([(sub["id"], about_event), (any_sub["id"], passing_event),
                                          (any_sub["id"], about_event)])
            r = c.patch(f"/v1/subscriptions/{sub['id']}", json={"min_relevance": None})
            assert r.status_code == 200 and r.json()["min_relevance"] is None
            r = c.patch(f"/v1/subscriptions/{sub['id']}", json={"name": "renamed"})
            assert r.json()["min_relevance"] is None
            r = c.patch(f"/v1/subscriptions/{sub['id']}", json={"min_relevance": 0.4})
            assert r.json()["min_relevance"] == 0.4
            assert c.patch(f"/v1/subscriptions/{sub['id']}", json={"min_relevance": "x"}).status_code == 422
    finally:
        receiver.close()


def test_score_returns_entities(client):
    r = client.post("/v1/score", json={"texts": [BOEING, TWO, "Rates are on hold"]})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(e["ticker"], e["sources"], e["spans"]) for e in items[0]["entities"]] == [("BA", ["name"], [[0, 6]])]
    assert items[0]["entities"][0]["sentiment"] == items[0]["sentiment"]
    assert {e["ticker"] for e in items[1]["entities"]} == {"AAPL", "SSNLF"}
    assert {e["sentiment_from"] for e in items[1]["entities"]} == {"entity_head"}
    assert items[2]["entities"] == []


def test_live_stream_min_relevance(api, dsn, stored):
    """The live stream's min_relevance: the alert made of a passing mention is skipped, the one
    whose evidence is about Boeing arrives (and the stream's other keys are not held back)."""
    from tests.api.test_alerts_stream import read_events

    sent = {}

    def write():
        sent["passing"] = insert_alert(dsn, key="BA", samples=("ent/e9002",))[1]
        sent["about"] = insert_alert(dsn, key="BA", samples=("ent/e9001",))[1]

    with api.client() as c, c.stream("GET", "/v1/stream/alerts", params={"ticker": "BA", "min_relevance": 0.7}) as r:
        assert r.status_code == 200
        [e] = read_events(r.iter_lines(), 1, on_connected=write)
    assert e["id"] == str(sent["about"])
    with api.client() as c:
        assert c.get("/v1/stream/alerts", params={"min_relevance": 3}).status_code == 422
