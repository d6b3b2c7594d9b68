"""The worker's KeyCache (core/stories.py) on the real Postgres: keys known held by a live story are
served from memory instead of probed, and that must change no decision. A worker's cache must learn
only from transactions that committed (a rolled-back batch's keys never existed), must read each
cached story's copy count from the database (another worker adds copies), and a stream assigned
with the cache must come out exactly as one assigned with a fresh, cacheless Stories per batch."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from core import stories as st
from core.events import store_scored
from core.pg import libpq_dsn
from tests.test_stories_write import fetch, keys, row

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture(scope="module")
def dsns(postgres):
    from tests.conftest import new_database

    return libpq_dsn(new_database(postgres, "stc")), libpq_dsn(new_database(postgres, "stc"))


async def run(dsn: str, stories: st.Stories, batch: list[tuple[tuple, list[int]]], commit: bool = True,
              tickers: dict[str, tuple[str, ...]] | None = None) -> dict[str, st.Assignment]:
    """The worker's path: assign, then insert the rows with their story columns, in one transaction
    (rolled back instead of committed when `commit` is false). `tickers`: an item's ticker keys by id."""
    conn = await asyncpg.connect(dsn)
    items = [st.Item(r[0], r[1], r[2], r[3], (tickers or {}).get(r[1], ()), tuple(b)) for r, b in batch]
    try:
        tx = conn.transaction()
        await tx.start()
        got = await stories.assign(conn, items, write_events=False)
        await store_scored(conn, [r for r, _ in batch], stories={
            (a.source, a.id, a.published_at): (a.story_id, a.novel, a.copies) for a in got})
        await (tx.commit() if commit else tx.rollback())
        return {a.id: a for a in got}
    finally:
        await conn.close()


async def test_committed_keys_are_served_from_the_cache_and_counts_come_from_the_database(dsns):
    dsn = dsns[0]
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    a = keys(10_000)
    mine, other = st.Stories(), st.Stories()
    await run(dsn, mine, [(row(1, T0), a)])
    await run(dsn, other, [(row(2, T0 + timedelta(minutes=1)), a)])  # another worker adds a copy
    before = mine.cache.served
    got = await run(dsn, mine, [(row(3, T0 + timedelta(minutes=2)), a)])
    assert mine.cache.served - before == st.BANDS  # every key held by w1's story: none probed
    assert (got["w3"].story_id, got["w3"].novel, got["w3"].copies) == ("wire/w1", False, 3)
    assert await fetch(dsn, "SELECT copies FROM story WHERE story_id = 'wire/w1'") == [(3,)]


async def test_a_cached_story_keeps_its_companies_so_a_template_about_another_is_not_merged(dsns):
    """The cache serves a story's keys without reading its row, so the companies its first event named
    come from the cache: an item with the very same keys that names another company is another story
    (a template), one that names none or the same joins it."""
    dsn = dsns[0]
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    a = keys(15_000)
    names = {"w1": ("ACME",), "w2": ("ACME",), "w3": ("BETA",)}
    mine = st.Stories()
    await run(dsn, mine, [(row(1, T0), a)], tickers=names)
    got = await run(dsn, mine, [(row(2, T0 + timedelta(minutes=1)), a)], tickers=names)
    before = mine.cache.served
    got.update(await run(dsn, mine, [(row(3, T0 + timedelta(minutes=2)), a)], tickers=names))
    got.update(await run(dsn, mine, [(row(4, T0 + timedelta(minutes=3)), a)], tickers=names))
    assert mine.cache.served - before == 2 * st.BANDS  # both batches from the cache: no story row read
    assert [(got[i].story_id, got[i].novel, got[i].copies) for i in ("w2", "w3", "w4")] == [
        ("wire/w1", False, 2), ("wire/w3", True, 1), ("wire/w1", False, 3)]
    assert await fetch(dsn, "SELECT story_id, copies, keys FROM story ORDER BY 1") == [
        ("wire/w1", 3, ["ACME"]), ("wire/w3", 1, ["BETA"])]


async def test_keys_of_a_rolled_back_batch_are_never_served(dsns):
    """A batch founds a story and rolls back (a fault; the sink retries it): its keys were never in
    the index, so the next item with those keys must find them absent, found its own story and
    write them. Served from a cache that learned them, they would look held and never be written."""
    dsn = dsns[0]
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    a = keys(20_000)
    stories = st.Stories()
    await run(dsn, stories, [(row(10, T0), a)], commit=False)
    before = stories.cache.served
    got = await run(dsn, stories, [(row(11, T0 + timedelta(minutes=1)), a)])
    assert stories.cache.served == before
    assert (got["w11"].story_id, got["w11"].novel) == ("wire/w11", True)
    assert await fetch(dsn, "SELECT DISTINCT story_id FROM story_key WHERE band = ANY($1)", a) == [("wire/w11",)]
    # the aborted transaction's lesson is gone; the committed one waits for the next batch to see it committed
    assert [set(p) for p in stories.cache.pending.values()] == [set(a)] and not stories.cache.keys
    await run(dsn, stories, [(row(12, T0 + timedelta(minutes=2)), keys(21_000))])
    assert set(a) <= set(stories.cache.keys)


async def test_a_stream_comes_out_the_same_with_the_cache_as_with_a_probe_of_every_key(dsns):
    """Random stories, copies and partial rewrites (enough equal keys or not), in batches: one worker
    with its cache against a fresh cacheless Stories per batch on another database."""
    rng = random.Random(7)
    bases: list[list[int]] = []
    batches = []
    n = 0
    for _ in range(12):
        batch = []
        for _ in range(20):
            n += 1
            if bases and rng.random() < 0.6:
                src = rng.choice(bases)
                same = rng.choice([st.MIN_BANDS - 1, st.MIN_BANDS, st.BANDS // 2, st.BANDS])
                b = rng.sample(src, same) + [rng.getrandbits(62) for _ in range(st.BANDS - same)]
            else:
                b = [rng.getrandbits(62) for _ in range(st.BANDS)]
            bases.append(b)
            batch.append((row(n, T0 + timedelta(seconds=n), rng.choice(["wire", "social", "blog"])), b))
        batches.append(batch)
    for dsn in dsns:
        await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    cached = st.Stories()
    got_cached, got_plain = {}, {}
    for batch in batches:
        got_cached.update(await run(dsns[0], cached, batch))
        got_plain.update(await run(dsns[1], st.Stories(cache_keys=0), batch))
    assert cached.cache.served > 0.2 * (cached.cache.served + cached.cache.probed)  # the cache was used
    assert got_cached == got_plain
    for q in ("SELECT band, story_id FROM story_key ORDER BY band",
              "SELECT story_id, copies, sources FROM story ORDER BY story_id"):
        assert await fetch(dsns[0], q) == await fetch(dsns[1], q)


def test_the_cache_stays_within_its_limit_dropping_stories_too_old_to_use_first():
    now = datetime.now(timezone.utc)
    cache = st.KeyCache(100, timedelta(hours=72), timedelta(hours=1))
    old = (("old", now - timedelta(hours=80), now.date()),)
    cache.keys = {b: old for b in range(50)}
    cache.learn(1, {b: (("new", now - timedelta(minutes=b), now.date()),) for b in range(100, 190)})
    assert cache.keys.keys().isdisjoint(range(100, 190))  # pending until seen committed
    cache.settle([1], ["committed"])
    assert set(cache.keys) == set(range(140, 190))  # the stale ones went first, then the oldest learned, to half
    cache.learn(2, {b: (("newer", now, now.date()),) for b in range(200, 240)})
    cache.settle([2], ["committed"])
    assert set(cache.keys) == set(range(140, 190)) | set(range(200, 240))  # within the limit: nothing goes
    cache.learn(3, {b: (("newest", now, now.date()),) for b in range(300, 320)})
    cache.settle([3], ["committed"])
    assert set(cache.keys) == set(range(210, 240)) | set(range(300, 320))
    cached, probe = cache.split({210, 5, 140}, now - timedelta(hours=72), now + timedelta(hours=1))
    assert list(cached) == [210] and probe == {5, 140}


def test_settling_reads_each_status_against_the_transaction_it_was_asked_for():
    """Two assignments of one worker on two connections: the second reads the statuses of the
    transactions pending when it started; the first may have settled some meanwhile and learned in
    a new one. Each status must go to its own transaction, never by position in what is pending now."""
    now = datetime.now(timezone.utc)
    cache = st.KeyCache(100, timedelta(hours=72), timedelta(hours=1))
    for xid, band in ((5, 50), (6, 60)):
        cache.learn(xid, {band: ((f"s{xid}", now, now.date()),)})
    asked = cache.xids()  # [5, 6], read by the second assignment
    cache.settle([5], ["committed"])  # the first assignment settled 5 meanwhile
    cache.learn(7, {70: (("s7", now, now.date()),)})  # and learned in its own transaction
    cache.settle(asked, ["committed", "aborted"])
    assert set(cache.keys) == {50} and list(cache.pending) == [7]
