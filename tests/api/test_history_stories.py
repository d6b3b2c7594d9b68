"""History past retention (issue 22) and stories (issue 20) in the API, on the real Postgres:
a day archived and dropped by core.history answers 410 on /v1/events with where its archive is,
and is readable again once restored; series say which rollup they came from and move to a
coarser one past a rollup's retention (a bucket finer than what is kept is a 400 naming what
is); events carry story_id / novel / copies, novel_only on events and series; /v1/stories and
/v1/stories/{id}; alerts carry their stories."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import pytest

from api.crud import alert_payload, alert_stories
from core import history
from core import stories as st
from core.events import store_scored
from tests.api.conftest import NOW, ApiServer, api_settings, event, insert_alert, run, seed, sql, tag_entities

pytestmark = pytest.mark.slow
STORY = "Acme shares plunge 18% after the SEC opens a fraud probe into its accounting"
OTHER = "Acme names a new chief financial officer effective next month after a long search"


async def _conn(dsn):
    return await asyncpg.connect(dsn)


# --- 410 for archived days ------------------------------------------------------------------
def test_events_of_a_dropped_day_are_410_until_restored(client, dsn, tmp_path):
    day = (NOW - timedelta(days=3)).date()
    at = NOW - timedelta(days=3)
    sql(dsn, "SELECT finsent_ensure_day_partition(%s)", day)  # as the worker's upkeep makes them ahead
    seed(dsn, [event(7000 + i, tickers=("ARCH",), at=at.replace(hour=12, minute=i)) for i in range(5)])
    root = tmp_path / "archive"  # (a mkdtemp here was left behind by every run)
    root.mkdir()

    async def go(fn):
        conn = await _conn(dsn)
        try:
            return await fn(conn)
        finally:
            await conn.close()
    run(go(lambda c: history.archive_day(c, root, day)))
    run(go(lambda c: history.drop_day(c, day, root)))
    params = {"ticker": "ARCH", "start": (NOW - timedelta(days=4)).isoformat(), "end": NOW.isoformat()}
    r = client.get("/v1/events", params=params)
    assert r.status_code == 410, r.text
    detail = r.json()["detail"]
    assert day.isoformat() in detail and str(root) in detail and f"finsent history restore {day}" in detail
    # a window that does not touch the day is answered as before
    assert client.get("/v1/events", params={"ticker": "ARCH"}).status_code == 200
    # series over the dropped day still come from the rollups
    s = client.get("/v1/series", params={**params, "key": "ARCH", "bucket": "1h"})
    assert s.status_code == 200 and sum(s.json()["series"][0]["n"]) == 5 and s.json()["resolution"] == "1h"
    run(go(lambda c: history.restore_day(c, root, day)))
    r = client.get("/v1/events", params=params)
    assert r.status_code == 200 and len(r.json()["items"]) == 5


def test_single_event_lookup_names_archived_days(client, dsn):
    day = (NOW - timedelta(days=9)).date()
    sql(dsn, "INSERT INTO history_day (day, state, archive_dir) VALUES (%s, 'dropped', '/srv/archive') "
             "ON CONFLICT (day) DO UPDATE SET state = 'dropped'", day)
    try:
        r = client.get("/v1/events/news/no-such-event/explain")
        assert r.status_code == 404 and "archived" in r.json()["detail"] and "finsent history restore" in r.json()["detail"]
    finally:
        sql(dsn, "DELETE FROM history_day WHERE day = %s", day)


# --- series resolution past a rollup's retention ----------------------------------------------
def test_series_resolution_follows_rollup_retention(db_url, dsn):
    at = (NOW - timedelta(days=3)).replace(hour=10, minute=0)
    seed(dsn, [event(7100 + i, tickers=("RETN",), at=at + timedelta(minutes=7 * i)) for i in range(6)])
    settings = api_settings(db_url, retention_minute_days=2, retention_5m_days=5, retention_hour_days=0)
    start = (at - timedelta(hours=1)).isoformat()
    with ApiServer(settings) as server, server.client() as c:
        def series(bucket, start=start, **extra):
            return c.get("/v1/series", params={"key": "RETN", "bucket": bucket, "start": start, **extra})
        r = series("1h")
        assert r.status_code == 200 and r.json()["resolution"] == "1h" and sum(r.json()["series"][0]["n"]) == 6
        r = series("15m")  # the minute rollup no longer covers this start: the 5-minute one does
        assert r.status_code == 200 and r.json()["resolution"] == "5m" and sum(r.json()["series"][0]["n"]) == 6
        r = series("1m")
        assert r.status_code == 400 and "5m" in r.json()["detail"] and "1m rollup 2 days" in r.json()["detail"]
        r = series("1m", start=(NOW - timedelta(hours=1)).isoformat())  # recent: minutes are kept
        assert r.status_code == 200 and r.json()["resolution"] == "1m"
        old = (NOW - timedelta(days=8)).isoformat()
        assert series("5m", start=old).status_code == 400 and series("1h", start=old).json()["resolution"] == "1h"
        # novel_only reads scored events: refused past raw retention
        assert c.get("/v1/series", params={"key": "RETN", "start": (NOW - timedelta(days=40)).isoformat(),
                                           "end": (NOW - timedelta(days=35)).isoformat(),
                                           "novel_only": "true"}).status_code == 400


# --- stories ----------------------------------------------------------------------------------
def seed_story(dsn: str) -> list:
    base = NOW - timedelta(minutes=30)
    rows = [event(7200, source="wire", tickers=("STRY",), sentiment="negative", at=base, text=STORY),
            event(7201, source="blog", tickers=("STRY",), sentiment="negative", at=base + timedelta(minutes=1),
                  text="BREAKING: " + STORY),
            event(7202, source="social", tickers=("STRY",), sentiment="negative", at=base + timedelta(minutes=2),
                  text="RT @desk: " + STORY + " https://t.co/x"),
            event(7203, source="wire", tickers=("STRY",), sentiment="neutral", at=base + timedelta(minutes=3),
                  text=OTHER)]

    async def go():
        conn = await _conn(dsn)
        try:
            async with conn.transaction():
                await store_scored(conn, rows, tag_entities(rows))
                return await st.Stories().assign(conn, [st.Item(r[0], r[1], r[2], r[3], tuple(r[7])) for r in rows])
        finally:
            await conn.close()
    return asyncio.run(go())


@pytest.fixture(scope="module")
def story_rows(dsn):
    got = seed_story(dsn)
    assert got[0].story_id == got[1].story_id == got[2].story_id != got[3].story_id
    return got


def test_events_carry_their_story_and_novel_only(client, story_rows):
    items = client.get("/v1/events", params={"ticker": "STRY"}).json()["items"]
    by_id = {i["id"]: i for i in items}
    assert by_id["e7202"]["story_id"] == "wire/e7200" and by_id["e7202"]["novel"] is False and by_id["e7202"]["copies"] == 3
    assert by_id["e7200"]["novel"] is True and by_id["e7200"]["copies"] == 1
    novel = client.get("/v1/events", params={"ticker": "STRY", "novel_only": "true"}).json()["items"]
    assert sorted(i["id"] for i in novel) == ["e7200", "e7203"]


def test_series_novel_only_counts_stories(client, story_rows):
    params = {"key": "STRY", "bucket": "1h", "start": (NOW - timedelta(hours=2)).isoformat()}
    allv = client.get("/v1/series", params=params).json()
    nov = client.get("/v1/series", params={**params, "novel_only": "true"}).json()
    assert allv["resolution"] == "1h" and nov["resolution"] == "raw" and nov["novel_only"] is True
    assert sum(allv["series"][0]["n"]) == 4 and sum(allv["series"][0]["negatives"]) == 3
    assert sum(nov["series"][0]["n"]) == 2 and sum(nov["series"][0]["negatives"]) == 1


def test_stories_list_and_detail(client, story_rows):
    r = client.get("/v1/stories", params={"ticker": "STRY"})
    assert r.status_code == 200, r.text
    items = {s["story_id"]: s for s in r.json()["items"]}
    s = items["wire/e7200"]
    assert s["copies"] == 3 and sorted(s["sources"]) == ["blog", "social", "wire"] and s["headline"] is None
    assert s["text"] == STORY and s["source"] == "wire" and "STRY" in s["keys"] and items["wire/e7203"]["copies"] == 1
    assert [x["story_id"] for x in client.get("/v1/stories", params={"ticker": "STRY", "min_copies": 2}).json()["items"]] == ["wire/e7200"]
    assert client.get("/v1/stories", params={"ticker": "NOPE"}).json()["items"] == []
    page = client.get("/v1/stories/wire/e7200", params={"limit": 2}).json()
    assert [e["id"] for e in page["events"]] == ["e7200", "e7201"] and page["copies"] == 3
    rest = client.get("/v1/stories/wire%2Fe7200", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [e["id"] for e in rest["events"]] == ["e7202"] and rest["next_cursor"] is None
    assert client.get("/v1/stories/e-unknown").status_code == 404
    assert client.get("/v1/stories/wire/e7200", params={"cursor": "forged.x"}).status_code == 400


def test_alerts_carry_their_stories(client, dsn):
    alert_id, _ = insert_alert(dsn, key="STRY", samples=("wire/e7200",))
    stories = [{"story_id": "e7200", "copies": 3, "sources": ["wire", "blog", "social"]}]
    sql(dsn, "UPDATE alert SET stories = %s::jsonb WHERE id = %s", json.dumps(stories), alert_id)
    assert client.get(f"/v1/alerts/{alert_id}").json()["stories"] == stories
    listed = {a["id"]: a for a in client.get("/v1/alerts", params={"key": "STRY"}).json()["items"]}
    assert listed[alert_id]["stories"] == stories


def test_alert_payload_spells_out_stories():
    """The live stream and webhooks send the worker's payload with `stories` always as objects."""
    assert alert_stories([["e1", 4, ["wire"]], {"story_id": "e2", "copies": 2, "sources": []}]) == [
        {"story_id": "e1", "copies": 4, "sources": ["wire"]}, {"story_id": "e2", "copies": 2, "sources": []}]
    assert alert_payload('{"alert_id": 1}')["stories"] == []
    assert alert_payload({"alert_id": 1, "stories": [["e9", 2, ["a", "b"]]]})["stories"][0]["copies"] == 2


def test_day_buckets_summed_in_postgres_equal_the_hours(client, dsn):
    """A 1-day bucket is 24 hourly rollup rows, summed in Postgres (queries.SERIES_GROUPED); the
    hourly series is summed in numpy: the two must agree bucket for bucket."""
    at = (NOW - timedelta(days=3)).replace(hour=1, minute=0)
    sentiments = ("negative", "neutral", "positive")
    seed(dsn, [event(7300 + i, tickers=("GRPD",), sentiment=sentiments[i % 3], score=(i % 7) / 10 - 0.3,
                     at=at + timedelta(hours=5 * i, minutes=i)) for i in range(14)])
    params = {"key": "GRPD", "start": (NOW - timedelta(days=4)).isoformat(), "end": NOW.isoformat()}
    days = client.get("/v1/series", params={**params, "bucket": "1d"}).json()["series"][0]
    hours = client.get("/v1/series", params={**params, "bucket": "1h",
                                             "start": days["t"][0], "end": NOW.isoformat()}).json()["series"][0]
    assert sum(days["n"]) == 14 and sum(days["negatives"]) == 5
    for i, t in enumerate(days["t"]):
        span = [j for j, h in enumerate(hours["t"]) if h[:10] == t[:10]]
        for col in ("n", "negatives", "neutrals", "positives"):
            assert days[col][i] == sum(hours[col][j] for j in span)
        n = days["n"][i]
        if n:
            total = sum(hours["mean_score"][j] * hours["n"][j] for j in span if hours["n"][j])
            assert abs(days["mean_score"][i] - total / n) < 1e-9


def test_series_cache_keeps_no_replica_answer_that_may_predate_a_change(dsn):
    """With a replica, a change heard on the primary within the replica's lag (+ sampling period)
    before a read began may be missing from that read: such an answer is served, not kept; one
    read after the settle time is kept; with the lag unknown nothing is kept."""
    import time

    from api.series_cache import SeriesCache

    async def go():
        pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2)
        settle = {"s": 5.0}
        cache = SeriesCache(pool, dsn, settle_s=lambda: settle["s"])
        cache.start()
        try:
            for _ in range(200):
                if cache.listening:
                    break
                await asyncio.sleep(0.05)
            assert cache.listening

            async def compute():
                return str(await pool.fetchval("SELECT 1")).encode()
            cache.changed(50.0)  # rollups from t=50 changed just now
            assert await cache.get(("a",), 100.0, compute) == b"1" and ("a",) not in cache.entries
            assert await cache.get(("b",), 40.0, compute) == b"1" and ("b",) in cache.entries  # ends before the change
            cache.recent[-1] = (time.monotonic() - 10, *cache.recent[-1][1:])  # older than the settle time now
            assert await cache.get(("a",), 100.0, compute) == b"1" and ("a",) in cache.entries
            settle["s"] = None  # the replica's lag is unknown (it does not answer)
            assert await cache.get(("c",), 10.0, compute) == b"1" and ("c",) not in cache.entries
        finally:
            await cache.stop()
            await pool.close()
    asyncio.run(go())


def test_alert_context_series_past_minute_retention(client, dsn):
    """An alert older than the minute rollups' retention (90 days by default) shows its context
    from the 5-minute rollups, and says so; a recent one per minute."""
    ws = (NOW - timedelta(days=100)).replace(minute=0)
    seed(dsn, [event(7400 + i, tickers=("OLDA",), sentiment="negative", at=ws + timedelta(minutes=i)) for i in range(3)])
    (old_id,) = sql(dsn, "INSERT INTO alert (key_type, key, window_start, window_end, n, negatives, baseline_rate, "
                         "baseline_n, z, p_value, severity, sample_event_ids) VALUES ('ticker', 'OLDA', %s, %s, 3, 3, "
                         "0.1, 10, 5, 1e-6, 'high', ARRAY['news/e7400']) RETURNING id", ws, ws + timedelta(minutes=5))[0]
    old = client.get(f"/v1/alerts/{old_id}").json()
    assert old["series_bucket"] == "5m" and sum(old["series"]["n"]) == 3
    recent_id, _ = insert_alert(dsn, key="OLDA")
    assert client.get(f"/v1/alerts/{recent_id}").json()["series_bucket"] == "1m"
