"""GET /v1/events (filters, keyset pages under concurrent inserts), /v1/series (equal to a
direct GROUP BY over the rows, also after a replayed batch), /v1/movers, and their 400/422s."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta

import pytest

from tests.api.conftest import NOW, event, seed, sql

pytestmark = pytest.mark.slow


def pages(client, params: dict) -> list[dict]:
    items, cursor = [], None
    while True:
        r = client.get("/v1/events", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def test_events_filters(client, dsn):
    rows = [event(i, source="flt", topic="earnings" if i % 2 else "macro", tickers=("FLTA",) if i % 3 else ("FLTB",),
                  sentiment=("negative", "neutral", "positive")[i % 3], text=f"Acme beats {i}% estimates")
            for i in range(60)]
    assert len(seed(dsn, rows)) == 60
    got = pages(client, {"source": "flt", "limit": 7})
    assert len(got) == 60
    keys = [(e["published_at"], e["source"], e["id"]) for e in got]
    assert keys == sorted(keys, reverse=True)  # newest first, keyset order
    earnings = pages(client, {"source": "flt", "topic": "earnings"})
    assert {e["id"] for e in earnings} == {f"e{i}" for i in range(60) if i % 2}
    neg_b = pages(client, {"source": "flt", "sentiment": "negative", "ticker": "FLTB"})
    assert {e["id"] for e in neg_b} == {f"e{i}" for i in range(60) if i % 3 == 0}
    assert all(e["score"] >= 0.5 for e in pages(client, {"source": "flt", "min_score": 0.5}))
    assert {e["id"] for e in pages(client, {"source": "flt", "q": "BEATS 5%"})} == {"e5"}  # % is literal
    assert {e["id"] for e in pages(client, {"source": "flt", "q": "BEATS 5"})} == {"e5"} | {f"e5{i}" for i in range(10)}
    assert pages(client, {"source": "flt", "q": "100%_"}) == []  # LIKE wildcards are literal
    assert pages(client, {"source": "flt", "model_version": "other"}) == []
    old = pages(client, {"source": "flt", "start": (NOW - timedelta(days=3)).isoformat(),
                         "end": (NOW - timedelta(days=2)).isoformat()})
    assert old == []


@pytest.mark.parametrize("params, status", [
    ({"limit": 0}, 422), ({"limit": 1001}, 422), ({"topic": "not-a-topic"}, 422), ({"ticker": "acme lower"}, 422),
    ({"sentiment": "angry"}, 422), ({"min_score": 2}, 422), ({"start": "yesterday"}, 422),
    ({"cursor": "garbage"}, 400), ({"cursor": "W10"}, 400),
    ({"start": "2024-01-01T00:00:00Z", "end": "2024-03-01T00:00:00Z"}, 400),
    ({"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, 400),
    ({"end": "0001-01-01T00:00:00Z"}, 400), ({"q": "x" * 201}, 422), ({"source": "\x00"}, 400),
])
def test_events_bad_input(client, params, status):
    r = client.get("/v1/events", params=params)
    assert r.status_code == status, r.text
    assert "detail" in r.json()


def test_pagination_complete_under_concurrent_inserts(client, dsn):
    base = [event(i, source="pag", at=NOW - timedelta(minutes=random.Random(i).randrange(1, 1400)))
            for i in range(1500)]
    seed(dsn, base)
    stop, inserted = threading.Event(), []

    def writer():
        n = 10_000
        while not stop.is_set():  # new rows land everywhere in the window, as late and fresh data do
            batch = [event(n + j, source="pag", at=NOW - timedelta(minutes=random.randrange(0, 1400), seconds=j))
                     for j in range(20)]
            seed(dsn, batch)
            inserted.extend(r[1] for r in batch)
            n += 20

    t = threading.Thread(target=writer)
    t.start()
    try:
        got = pages(client, {"source": "pag", "limit": 50})
    finally:
        stop.set()
        t.join()
    ids = Counter(e["id"] for e in got)
    assert inserted, "the writer inserted nothing while paging"
    assert max(ids.values()) == 1  # no repeats
    assert {r[1] for r in base} <= set(ids)  # no gaps: every row present at the start is seen once


def direct_group_by(dsn, key_type: str, keys: list[str], start, end, step_s: int) -> dict:
    expr = {"ticker": "unnest(tickers)", "topic": "topic"}[key_type]
    rows = sql(dsn, f"""
        SELECT k, to_timestamp(floor(extract(epoch FROM published_at) / %s) * %s) AS t, count(*),
               count(*) FILTER (WHERE sentiment = 'negative'), count(*) FILTER (WHERE sentiment = 'positive'),
               sum(score)
        FROM (SELECT {expr} AS k, published_at, sentiment, score FROM scored_event
              WHERE published_at >= %s AND published_at < %s) x
        WHERE k = ANY(%s) GROUP BY 1, 2""", step_s, step_s, start, end, keys)
    return {(k, t): (n, neg, pos, round(s, 6)) for k, t, n, neg, pos, s in rows}


def api_series(client, key_type, keys, start, end, bucket) -> dict:
    r = client.get("/v1/series", params={"key_type": key_type, "key": keys, "start": start.isoformat(),
                                         "end": end.isoformat(), "bucket": bucket})
    assert r.status_code == 200, r.text
    out = {}
    for s in r.json()["series"]:
        from datetime import datetime

        assert len(s["t"]) == len(s["n"])  # zero-filled: every bucket present
        for i, t in enumerate(s["t"]):
            if s["n"][i]:
                mean = s["mean_score"][i]
                out[(s["key"], datetime.fromisoformat(t))] = (s["n"][i], s["negatives"][i], s["positives"][i],
                                                              round(mean * s["n"][i], 6))
                assert s["negative_share"][i] == pytest.approx(s["negatives"][i] / s["n"][i])
            else:
                assert s["negative_share"][i] is None and s["mean_score"][i] is None
    return out


def test_series_equals_group_by_including_after_a_replayed_batch(client, dsn):
    rng = random.Random(7)
    rows = [event(i, source="ser", topic=rng.choice(["ipo", "dividend"]),
                  tickers=rng.sample(["SERA", "SERB", "SERC"], rng.randint(1, 2)),
                  sentiment=rng.choice(["negative", "neutral", "positive"]), score=round(rng.uniform(-1, 1), 3),
                  at=NOW - timedelta(minutes=rng.randrange(0, 600), seconds=rng.randrange(60)))
            for i in range(800)]
    seed(dsn, rows[:500])
    start, end = NOW - timedelta(hours=12), NOW + timedelta(minutes=1)
    for key_type, keys, bucket, step in (("ticker", ["SERA", "SERB", "SERC"], "5m", 300),
                                         ("topic", ["ipo", "dividend"], "1h", 3600)):
        assert api_series(client, key_type, keys, start, end, bucket) == direct_group_by(dsn, key_type, keys, start,
                                                                                         end, step)
    assert len(seed(dsn, rows[300:800])) == 300  # a replay: 200 rows seen before, 300 new
    for key_type, keys, bucket, step in (("ticker", ["SERA", "SERB", "SERC"], "15m", 900),
                                         ("topic", ["ipo", "dividend"], "1m", 60)):
        direct = direct_group_by(dsn, key_type, keys, start, end, step)
        assert api_series(client, key_type, keys, start, end, bucket) == direct
        assert sum(v[0] for v in direct.values()) == (800 if key_type == "topic" else
                                                      sum(len(r[7]) for r in rows))


def test_series_shape_and_errors(client):
    r = client.get("/v1/series", params={"key": ["NONE1", "NONE2"], "bucket": "1h"})
    assert r.status_code == 200
    body = r.json()
    assert [s["key"] for s in body["series"]] == ["NONE1", "NONE2"]
    assert all(len(s["t"]) in (24, 25) and set(s["n"]) == {0} for s in body["series"])
    assert client.get("/v1/series").status_code == 422  # key is required
    assert client.get("/v1/series", params={"key": "A", "bucket": "2m"}).status_code == 422
    assert client.get("/v1/series", params={"key": "A", "key_type": "country"}).status_code == 422
    too_many = client.get("/v1/series", params={"key": [f"K{i}" for i in range(50)], "bucket": "1m",
                                                "start": (NOW - timedelta(days=30)).isoformat()})
    assert too_many.status_code == 400 and "too many points" in too_many.json()["detail"]
    assert client.get("/v1/series", params={"key": [f"K{i}" for i in range(51)]}).status_code == 422


def test_movers(client, dsn):
    rows = []
    for i in range(400):  # baseline: MOVA 10 % negative, MOVB 50 %
        at = NOW - timedelta(hours=2, minutes=i % 600)
        rows.append(event(20_000 + i, source="mov", tickers=("MOVA",), at=at,
                          sentiment="negative" if i % 10 == 0 else "neutral"))
        rows.append(event(30_000 + i, source="mov", tickers=("MOVB",), at=at,
                          sentiment="negative" if i % 2 else "neutral"))
    for i in range(40):  # last hour: MOVA jumps to 75 % negative, MOVB unchanged
        at = NOW - timedelta(minutes=i % 50)
        rows.append(event(40_000 + i, source="mov", tickers=("MOVA",), at=at,
                          sentiment="negative" if i % 4 else "neutral"))
        rows.append(event(50_000 + i, source="mov", tickers=("MOVB",), at=at,
                          sentiment="negative" if i % 2 else "neutral"))
    seed(dsn, rows)
    r = client.get("/v1/movers", params={"key_type": "ticker", "window_minutes": 60, "baseline_hours": 12,
                                         "min_count": 20, "end": (NOW + timedelta(minutes=1)).isoformat()})
    assert r.status_code == 200, r.text
    order = [m["key"] for m in r.json()["items"]]  # other tests' tickers share this database
    items = {m["key"]: m for m in r.json()["items"]}
    top = items["MOVA"]
    assert top["n"] == 40 and top["negatives"] == 30
    assert top["baseline_n"] == 400 and top["baseline_negatives"] == 40 and top["delta"] > 0.5 and top["z"] > 5
    assert "MOVB" not in items or order.index("MOVB") > order.index("MOVA")
    assert all(m["delta"] > 0 for m in items.values())  # direction=up
    down = client.get("/v1/movers", params={"key_type": "ticker", "direction": "down", "min_count": 20,
                                            "end": (NOW + timedelta(minutes=1)).isoformat()}).json()["items"]
    assert "MOVA" not in {m["key"] for m in down} and all(m["delta"] < 0 for m in down)
    assert client.get("/v1/movers", params={"window_minutes": 0}).status_code == 422
    assert client.get("/v1/movers", params={"key_type": "source"}).status_code == 422
    assert client.get("/v1/movers", params={"end": "1970-01-02T00:00:00Z"}).status_code == 400
