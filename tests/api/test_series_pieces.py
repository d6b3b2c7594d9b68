"""Series assembled from rollup pieces kept in memory (api/series_pieces.py, api/series_cache.py):
windows an outside client picks (any start, end, bucket and keys, crossing piece boundaries) equal
SQL over the raw rows, read from pieces already in memory the second time; new rows in the live
tail or in an older piece are counted at once; a piece read while a change at or before its end is
heard is not kept; a long span of coarse buckets is summed in SQL and equals too."""

from __future__ import annotations

import asyncio
import random
import re
import time
from datetime import datetime, timedelta, timezone

import asyncpg
import numpy as np
import orjson
import pytest

from api.crud import ceil_time, floor_time, time_axis
from api.routes.series import BUCKETS
from api.series_cache import Rollup, SeriesCache
from api.series_pieces import MISSING, Pieces
from models.labels import TOPICS
from tests.api.conftest import NOW, ApiServer, api_settings, event, seed, sql, wait_until

pytestmark = pytest.mark.slow
TICKERS = ["PCA", "PCB", "PCC", "PCD"]
TOPIC_KEYS = sorted(TOPICS)[:3]
SPAN = timedelta(days=3)


def pieces(client, outcome: str) -> float:
    m = re.search(rf'^finsent_api_series_pieces_total{{outcome="{outcome}"}} (\S+)$', client.get("/metrics").text,
                  re.M)
    return float(m.group(1))


def listening(client) -> bool:
    return bool(re.search(r"^finsent_api_series_cache_listening 1", client.get("/metrics").text, re.M))


def raw(dsn, key_type: str, keys: list[str], start, end, step_s: int) -> dict:
    """(key, bucket start) → (n, negatives, neutrals, positives, score sum) from scored_event."""
    expr = {"ticker": "unnest(tickers)", "topic": "topic"}[key_type]
    rows = sql(dsn, f"""
        SELECT k, to_timestamp(floor(extract(epoch FROM published_at) / %s) * %s) AS t, count(*),
               count(*) FILTER (WHERE sentiment = 'negative'), count(*) FILTER (WHERE sentiment = 'neutral'),
               count(*) FILTER (WHERE sentiment = 'positive'), sum(score)
        FROM (SELECT {expr} AS k, published_at, sentiment, score FROM scored_event
              WHERE published_at >= %s AND published_at < %s) x
        WHERE k = ANY(%s) GROUP BY 1, 2""", step_s, step_s, start, end, keys)
    return {(k, t): (n, neg, neu, pos, round(s, 6)) for k, t, n, neg, neu, pos, s in rows}


def api(client, key_type: str, keys: list[str], start, end, bucket: str) -> tuple[dict, dict]:
    """(the answer as `raw` gives it, the answer's JSON); checks the zero-filled, aligned shape."""
    r = client.get("/v1/series", params={"key_type": key_type, "key": keys, "start": start.isoformat(),
                                         "end": end.isoformat(), "bucket": bucket})
    assert r.status_code == 200, r.text
    body, step = r.json(), timedelta(seconds=BUCKETS[bucket])
    first, last = floor_time(start, step), ceil_time(end, step)
    assert datetime.fromisoformat(body["start"]) == first and datetime.fromisoformat(body["end"]) == last
    out = {}
    for s in body["series"]:
        assert [datetime.fromisoformat(t) for t in s["t"]] == [first + i * step for i in range((last - first) // step)]
        for i, t in enumerate(s["t"]):
            if s["n"][i]:
                assert s["negative_share"][i] == pytest.approx(s["negatives"][i] / s["n"][i])
                out[(s["key"], datetime.fromisoformat(t))] = (s["n"][i], s["negatives"][i], s["neutrals"][i],
                                                              s["positives"][i], round(s["mean_score"][i] * s["n"][i], 6))
            else:
                assert s["negative_share"][i] is None and s["mean_score"][i] is None
    return out, body


def random_rows(rng: random.Random, first_id: int, count: int, since: datetime, span: timedelta) -> list[tuple]:
    return [event(first_id + i, source="pc", topic=rng.choice(TOPIC_KEYS), tickers=rng.sample(TICKERS, rng.randint(1, 2)),
                  sentiment=rng.choice(["negative", "neutral", "positive"]), score=round(rng.uniform(-1, 1), 3),
                  at=since + timedelta(seconds=rng.uniform(0, span.total_seconds())))
            for i in range(count)]


@pytest.fixture(scope="module")
def seeded(client, dsn):
    rng = random.Random(18)
    seed(dsn, random_rows(rng, 0, 1500, NOW - SPAN, SPAN))
    wait_until(lambda: listening(client), 10, "cache listening")
    return rng


def test_any_window_equals_sql_over_raw_rows_and_reuses_pieces(client, dsn, seeded):
    rng = random.Random(5)
    for case in range(14):
        bucket = rng.choice(list(BUCKETS))
        longest = min(SPAN, timedelta(seconds=BUCKETS[bucket] * 600))  # within the point limit
        length = timedelta(seconds=rng.uniform(60, longest.total_seconds()))
        start = NOW - SPAN + timedelta(seconds=rng.uniform(0, (SPAN - length).total_seconds() + 3600))
        key_type, keys = rng.choice([("ticker", rng.sample(TICKERS, rng.randint(1, 4))),
                                     ("topic", rng.sample(TOPIC_KEYS, rng.randint(1, 3)))])
        step = timedelta(seconds=BUCKETS[bucket])
        expected = raw(dsn, key_type, keys, floor_time(start, step), ceil_time(start + length, step), BUCKETS[bucket])
        got, _ = api(client, key_type, keys, start, start + length, bucket)
        assert got == expected, (case, bucket, key_type, keys, start, length)
        # the same pieces under a window shifted by less than a piece: no read, same counts where they overlap
        hits, misses = pieces(client, "hit"), pieces(client, "miss")
        shifted = start + step
        again, _ = api(client, key_type, keys, shifted, shifted + length, bucket)
        assert again == raw(dsn, key_type, keys, floor_time(shifted, step), ceil_time(shifted + length, step),
                            BUCKETS[bucket])
        if pieces(client, "miss") == misses:  # (a shift across a piece boundary reads the next piece)
            assert pieces(client, "hit") > hits


def test_with_the_cache_off_every_window_equals_sql_too(db_url, dsn, seeded):
    """Nothing kept (FINSENT_API_SERIES_CACHE_MB=0, as while the listener is down): fine buckets
    read packed rows of just the span, coarse ones (a day of hourly rows) are summed in SQL."""
    rng = random.Random(9)
    with ApiServer(api_settings(db_url, api_series_cache_mb=0)) as server, server.client() as off:
        before = pieces(off, "hit"), pieces(off, "miss")  # (the metrics are this process's: both servers')
        for bucket in ("1m", "5m", "15m", "1h", "12h", "1d"):
            step = timedelta(seconds=BUCKETS[bucket])
            start = NOW - SPAN + timedelta(seconds=rng.uniform(0, 86400))
            end = start + min(SPAN - timedelta(days=1), step * 500)
            keys = rng.sample(TICKERS, 3)
            assert api(off, "ticker", keys, start, end, bucket)[0] == raw(dsn, "ticker", keys, floor_time(start, step),
                                                                          ceil_time(end, step), BUCKETS[bucket])
        assert (pieces(off, "hit"), pieces(off, "miss")) == before


def test_new_rows_in_the_live_tail_and_in_an_older_piece_are_counted(client, dsn, seeded):
    start, end = NOW - timedelta(days=2, hours=1), NOW + timedelta(minutes=5)
    old = (NOW - timedelta(days=2, hours=3), NOW - timedelta(days=2, hours=2))  # ends before every change below
    for bucket, step in (("5m", 300), ("15m", 900), ("1h", 3600)):
        got, _ = api(client, "ticker", TICKERS, start, end, bucket)
        assert got == raw(dsn, "ticker", TICKERS, floor_time(start, timedelta(seconds=step)),
                          ceil_time(end, timedelta(seconds=step)), step)
    api(client, "ticker", TICKERS, *old, "5m")
    tail = [event(5000 + i, source="pc", tickers=("PCA",), sentiment="negative", at=NOW - timedelta(seconds=30 + i))
            for i in range(7)]
    seed(dsn, tail)  # the live tail: the newest piece changes
    for bucket, step in (("5m", 300), ("15m", 900), ("1h", 3600)):
        s = timedelta(seconds=step)
        want = raw(dsn, "ticker", TICKERS, floor_time(start, s), ceil_time(end, s), step)
        wait_until(lambda: api(client, "ticker", TICKERS, start, end, bucket)[0] == want, 5, f"the tail in {bucket}")
    misses = pieces(client, "miss")
    api(client, "ticker", TICKERS, *old, "15m")  # a piece that ended before the change was kept
    assert pieces(client, "miss") == misses
    seed(dsn, [event(6000 + i, source="pc", tickers=("PCB",), at=NOW - timedelta(days=2, minutes=10 * i))
               for i in range(5)])  # an older piece changes (a late batch): it and every later piece are read again
    for bucket, step in (("5m", 300), ("1h", 3600)):
        s = timedelta(seconds=step)
        want = raw(dsn, "ticker", TICKERS, floor_time(start, s), ceil_time(end, s), step)
        wait_until(lambda: api(client, "ticker", TICKERS, start, end, bucket)[0] == want, 5, f"the late batch {bucket}")


def test_a_long_span_of_coarse_buckets_is_summed_in_sql_and_equal(client, dsn, seeded):
    start, end = NOW - timedelta(days=2000), NOW + timedelta(days=1)
    keys = TICKERS + [f"PCX{i}" for i in range(8)]  # 12 keys × 2,001 days of hourly rows: past the pieces' bound
    got, body = api(client, "ticker", keys, start, end, "1d")
    assert body["resolution"] == "1h" and len(body["series"]) == 12
    day = timedelta(days=1)
    assert got == raw(dsn, "ticker", keys, floor_time(start, day), ceil_time(end, day), 86400)


async def until_listening(cache, tries: int = 200) -> None:
    """Wait (bounded, 10 s) for the cache's LISTEN connection."""
    for _ in range(tries):
        if cache.listening:
            return
        await asyncio.sleep(0.05)


def test_a_piece_read_while_a_change_is_heard_is_used_not_kept(dsn, seeded):
    async def go():
        pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2, server_settings={"timezone": "UTC"})
        cache = SeriesCache(pool, dsn)
        cache.start()
        try:
            await until_listening(cache)
            assert cache.listening
            r = Rollup(300, "event_rollup_5m", "bucket")
            j = int(NOW.timestamp() // r.piece_s)
            start, end = (j - 3) * r.piece_s, (j + 1) * r.piece_s
            read = asyncio.create_task(cache.rollup_rows(r, "ticker", ["PCA", "PCC"], start, end))
            await asyncio.sleep(0)  # the read of the missing pieces has started
            assert cache.fills
            cache.changed((j - 2) * r.piece_s + 600)  # a change inside piece j-2, heard while it is read
            rows = await read
            assert set(cache.pieces.entries) == {(r.table, "ticker", k, j - 3) for k in ("PCA", "PCC")}
            again = await cache.rollup_rows(r, "ticker", ["PCA", "PCC"], start, end)  # the rest read again, kept
            assert np.array_equal(rows, again) and len(cache.pieces.entries) == 8
            n = sql(dsn, "SELECT count(*) FROM scored_event WHERE 'PCA' = ANY(tickers) AND published_at >= "
                         "to_timestamp(%s) AND published_at < to_timestamp(%s)", start, end)[0][0]
            assert rows[0, 0].sum() == n > 0  # n of PCA
        finally:
            await cache.stop()
            await pool.close()
    asyncio.run(go())


def test_on_a_replica_a_piece_read_within_the_settle_time_of_a_change_is_not_kept(dsn, seeded):
    """A replica may not have replayed a change heard on the primary just before the read began:
    pieces after it are used, not kept, until the settle time has passed; nothing is kept while
    the replica's lag is unknown."""
    async def go():
        pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2, server_settings={"timezone": "UTC"})
        settle = {"s": 5.0}
        cache = SeriesCache(pool, dsn, settle_s=lambda: settle["s"])
        cache.start()
        try:
            await until_listening(cache)
            r = Rollup(3600, "event_rollup_hour", "bucket")
            j = int(NOW.timestamp() // r.piece_s)
            start, end = (j - 1) * r.piece_s, (j + 1) * r.piece_s
            cache.changed(j * r.piece_s + 3600)  # heard just now, before the read: inside piece j
            await cache.rollup_rows(r, "ticker", ["PCA"], start, end)
            assert set(cache.pieces.entries) == {(r.table, "ticker", "PCA", j - 1)}
            cache.recent[-1] = (time.monotonic() - 10, *cache.recent[-1][1:])  # settled
            await cache.rollup_rows(r, "ticker", ["PCA"], start, end)
            assert len(cache.pieces.entries) == 2
            settle["s"] = None
            cache.pieces.clear()
            await cache.rollup_rows(r, "ticker", ["PCA"], start, end)
            assert not cache.pieces.entries
        finally:
            await cache.stop()
            await pool.close()
    asyncio.run(go())


def test_pieces_store_drops_what_a_change_reaches_and_keeps_its_budget():
    p = Pieces(max_bytes=10_000)
    spans = {"t": 100}
    full = np.ones((5, 4))
    for j in range(4):
        p.put(("t", "ticker", "A", j), full * j)
    assert p.get(("t", "ticker", "A", 0)) is None  # all zero: kept as "no rows"
    assert p.get(("t", "ticker", "B", 0)) is MISSING
    p.changed(250.0, spans)  # pieces ending after 250: j = 2 (200..300) and 3
    assert [pk[3] for pk in p.entries] == [1, 0]  # (0 was read last)
    assert p.get(("t", "ticker", "A", 1))[0, 0] == 1
    for j in range(10, 60):
        p.put(("t", "ticker", "C", j), full)
    assert p.size <= 10_000 and ("t", "ticker", "C", 59) in p.entries and ("t", "ticker", "A", 1) not in p.entries
    p.changed(float("-inf"), spans)
    assert not p.entries and p.size == 0 and not p.index


def test_the_kept_bucket_times_are_those_of_the_start_given():
    step = timedelta(minutes=15)
    utc = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
    paris = utc.astimezone(timezone(timedelta(hours=1)))  # the same instant: an equal datetime
    assert orjson.loads(orjson.dumps(time_axis(utc, step, 2))) == ["2026-01-05T10:00:00+00:00",
                                                                    "2026-01-05T10:15:00+00:00"]
    assert orjson.loads(orjson.dumps(time_axis(paris, step, 2))) == ["2026-01-05T11:00:00+01:00",
                                                                      "2026-01-05T11:15:00+01:00"]
    assert orjson.loads(orjson.dumps(time_axis(utc + step, step, 2)))[0] == "2026-01-05T10:15:00+00:00"
