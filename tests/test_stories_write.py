"""Stories (core/stories.py) on the real Postgres: the batch's writes (story rows, new band keys,
the scored_event story columns) go in one statement, and the candidate read fetches each story
row once, however many of the batch's keys hit it. These check that nothing of a batch's
decisions is lost or mixed up by either: a batch that brings no new key, and one batch hitting
two stories with many keys each. Both write paths are checked: assign after the insert (it
updates the rows: backfill) and assign before it, the rows inserted with their story columns
(the worker's path, stream/sink.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from core import stories as st
from core.events import store_scored
from core.pg import libpq_dsn

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)


def row(i: int, at: datetime, source: str = "wire") -> tuple:
    return (source, f"w{i}", at, f"headline {i}", None, None, "en", [], at, at, "M&A", 0.9, "negative",
            0.8, 0.1, 0.1, -0.7, "v-test", False)


@pytest.fixture(scope="module")
def dsn(postgres):
    from tests.conftest import new_database

    return libpq_dsn(new_database(postgres, "stw"))


@pytest.fixture(params=["insert", "update"])
def assign(request, dsn):
    """Store and assign (row, its band keys) pairs in one transaction by one of the two paths."""
    async def run(batch: list[tuple[tuple, list[int]]]) -> dict[str, st.Assignment]:
        return await store_and_assign(dsn, batch, request.param)
    return run


async def store_and_assign(dsn: str, batch: list[tuple[tuple, list[int]]], path: str,
                           new: set | None = None) -> dict[str, st.Assignment]:
    conn = await asyncpg.connect(dsn)
    items = [st.Item(r[0], r[1], r[2], r[3], (), tuple(b)) for r, b in batch]
    try:
        async with conn.transaction():
            if path == "update":
                inserted = await store_scored(conn, [r for r, _ in batch])
                got = await st.Stories().assign(conn, items)
            else:
                got = await st.Stories().assign(conn, items, write_events=False)
                inserted = await store_scored(conn, [r for r, _ in batch], stories={
                    (a.source, a.id, a.published_at): (a.story_id, a.novel, a.copies) for a in got})
        if new is not None:
            new.update(inserted)
        return {a.id: a for a in got}
    finally:
        await conn.close()


async def fetch(dsn: str, query: str, *args) -> list[tuple]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


def keys(base: int) -> list[int]:
    return [base + k for k in range(st.BANDS)]


async def test_a_batch_of_copies_that_bring_no_new_key_is_still_written(dsn, assign):
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    a = keys(70_000)
    await assign([(row(1, T0), a)])
    got = await assign([(row(2, T0 + timedelta(minutes=1), "social"), a),
                        (row(3, T0 + timedelta(minutes=2), "reuters"), a[::-1])])
    assert [(got[i].story_id, got[i].novel, got[i].copies) for i in ("w2", "w3")] == [("wire/w1", False, 2),
                                                                                        ("wire/w1", False, 3)]
    assert await fetch(dsn, "SELECT id, story_id, novel, copies FROM scored_event WHERE id = ANY($1) ORDER BY id",
                       ["w1", "w2", "w3"]) == [("w1", "wire/w1", True, 1), ("w2", "wire/w1", False, 2), ("w3", "wire/w1", False, 3)]
    story = await fetch(dsn, "SELECT copies, sources FROM story WHERE story_id = 'wire/w1'")
    assert story[0][0] == 3 and sorted(story[0][1]) == ["reuters", "social", "wire"]
    assert await fetch(dsn, "SELECT count(*), min(story_id), max(story_id) FROM story_key WHERE band = ANY($1)",
                       a) == [(st.BANDS, "wire/w1", "wire/w1")]


async def test_one_batch_hitting_two_stories_with_many_keys_keeps_each_storys_counts(dsn, assign):
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    p, q = keys(80_000), keys(81_000)
    await assign([(row(10, T0), p), (row(11, T0 + timedelta(seconds=1)), q)])
    q_rewrite = q[: st.BANDS // 2] + keys(82_000)[: st.BANDS - st.BANDS // 2]  # half its keys new
    p_short = p[: st.MIN_BANDS] + keys(83_000)[: st.BANDS - st.MIN_BANDS]  # just enough keys equal
    got = await assign([(row(12, T0 + timedelta(minutes=1)), p), (row(13, T0 + timedelta(minutes=2)), q_rewrite),
                             (row(14, T0 + timedelta(minutes=3)), p_short),
                             (row(15, T0 + timedelta(minutes=4)), keys(84_000))])
    assert [(got[i].story_id, got[i].copies) for i in ("w12", "w13", "w14", "w15")] == [
        ("wire/w10", 2), ("wire/w11", 2), ("wire/w10", 3), ("wire/w15", 1)]
    assert await fetch(dsn, "SELECT story_id, copies FROM story WHERE story_id = ANY($1) ORDER BY 1",
                       ["wire/w10", "wire/w11", "wire/w15"]) == [("wire/w10", 3), ("wire/w11", 2), ("wire/w15", 1)]
    # the rewrite's new keys point to its story, the keys it shared stay with it; a copy's new keys join its story
    held = dict(await fetch(dsn, "SELECT band, story_id FROM story_key WHERE band = ANY($1)",
                            q_rewrite + p_short + keys(84_000)))
    assert {held[b] for b in q_rewrite} == {"wire/w11"} and {held[b] for b in p_short} == {"wire/w10"}
    assert {held[b] for b in keys(84_000)} == {"wire/w15"}


async def test_insert_path_fills_a_row_stored_without_a_story_and_keeps_a_row_stored_with_one(dsn):
    """A row stored while stories were off gets its story (not counted as new again); a replayed
    row keeps the story it has; a row sent twice in one batch is stored once, with its story."""
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    a, b = keys(90_000), keys(91_000)
    await store_and_assign(dsn, [(row(20, T0), a)], "insert")
    conn = await asyncpg.connect(dsn)
    try:
        await store_scored(conn, [row(21, T0 + timedelta(minutes=1))])  # stories off: no story columns
    finally:
        await conn.close()
    new: set = set()
    got = await store_and_assign(dsn, [(row(20, T0), a), (row(21, T0 + timedelta(minutes=1)), a),
                                       (row(22, T0 + timedelta(minutes=2)), b), (row(22, T0 + timedelta(minutes=2)), b)],
                                 "insert", new)
    assert new == {("wire", "w22")}
    assert [(got[i].story_id, got[i].novel, got[i].copies) for i in ("w20", "w21", "w22")] == [
        ("wire/w20", True, 1), ("wire/w20", False, 2), ("wire/w22", True, 1)]
    assert await fetch(dsn, "SELECT id, story_id, novel, copies FROM scored_event ORDER BY id") == [
        ("w20", "wire/w20", True, 1), ("w21", "wire/w20", False, 2), ("w22", "wire/w22", True, 1)]
    assert await fetch(dsn, "SELECT story_id, copies FROM story ORDER BY 1") == [("wire/w20", 2), ("wire/w22", 1)]


async def test_the_candidate_probe_reads_keys_by_band_not_the_whole_window(dsn):
    """Every live key is inside the 72 h window, so a plan that scans the window (by first_at)
    and tests each key against the batch's array costs keys × array per batch (it did: 257-408 ms
    on 35,000 keys). With statistics that make the window look narrow, the probe must still go by
    band, and rows outside the window must not come back."""
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    conn = await asyncpg.connect(dsn)
    try:
        # statistics taken while the keys were old, then the keys move into the window: the planner
        # believes the window empty (as with statistics that lag behind the newest keys, or none)
        await conn.execute("""INSERT INTO story_key (band, slot, story_id, day, first_at)
            SELECT g, 0, 'k' || g, current_date, now() - interval '20 days' FROM generate_series(1, 20000) g""")
        await conn.execute("ANALYZE story_key")
        await conn.execute("UPDATE story_key SET first_at = now() - make_interval(secs => band % 3600)")
        await conn.execute("INSERT INTO story_key VALUES (-1, 0, 'old', current_date - 5, now() - interval '5 days')")
        await conn.execute("INSERT INTO story (slot, story_id, day, first_at, last_at, source, keys, copies, sources) "
                           "VALUES (0, 'k7', current_date, now(), now(), 'wire', '{}', 1, '{wire}'), "
                           "(0, 'old', current_date - 5, now(), now(), 'wire', '{}', 1, '{wire}')")
        probe = list(range(-1, 2000, 1)) + list(range(10**6, 10**6 + 2000))
        lo, hi = datetime.now(timezone.utc) - timedelta(hours=72), datetime.now(timezone.utc) + timedelta(hours=1)
        async with conn.transaction():
            await conn.execute(st.LOCK_SQL, st.LOCK_ID, [])
            for _ in range(6):  # past the prepared statement's fifth run, where a generic plan may be chosen
                rows = await conn.fetch(st.CANDIDATES_SQL, st._literal(probe), lo, hi, [], [], "{}")
            # 'old' is outside the window: its key comes back (it is present) but not as a candidate,
            # and its story row is not read
            got = {(r["story_id"], r["live"], tuple(r["bands"]), r["copies"]) for r in rows
                   if r["copies"] is not None or not r["live"]}
            assert got == {("k7", True, (7,), 1), ("old", False, (-1,), None)}
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + st.CANDIDATES_SQL, st._literal(probe), lo, hi,
                                                            [], [], "{}"))
        assert "ix_story_key_first_at" not in plan, plan
    finally:
        await conn.close()


async def test_a_key_that_appears_between_the_probe_and_the_insert_is_retried_not_rejected(dsn):
    """New keys are a plain INSERT (the probe, under the advisory lock, found them absent). A key that
    is there all the same (a writer that bypassed the lock) must fail the batch as KeyRace — which the
    sink retries — and never as the unique violation, which the sink takes for bad rows."""
    from stream.sink import DATA

    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    stories = st.Stories()
    it = st.Item("wire", "r1", T0, "Acme shares plunge 12% after a fraud probe", ("ACME",))
    bands = stories._bands([it])[id(it)]
    conn, other = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        with pytest.raises(st.KeyRace):
            async with conn.transaction():
                await conn.execute(st.LOCK_SQL, st.LOCK_ID, [])
                plan = st._Plan(stories, await conn.fetch(st.CANDIDATES_SQL, st._literal(sorted(bands)),
                                                          T0 - timedelta(hours=72), T0 + timedelta(hours=1),
                                                          [], [], "{}"))
                plan.add(it, bands)
                await other.execute("INSERT INTO story_key (band, slot, story_id, day, first_at) "
                                    "VALUES ($1, 0, 'x', current_date, now())", bands[3])
                await plan.write(conn, events=False)
    finally:
        await conn.close()
        await other.close()
    assert not isinstance(st.KeyRace("x"), DATA)
    assert await fetch(dsn, "SELECT story_id FROM story_key") == [("x",)]  # the batch wrote nothing


@pytest.mark.parametrize("together", [False, True], ids=["later-batch", "same-batch"])
async def test_two_sources_that_number_their_items_alike_never_share_a_story(dsn, together):
    """Event ids are unique per source only. The story id was the founder's bare id, so the second
    feed's item w50 founded a story 'w50' that the upsert merged into the first feed's: stored as a
    copy (novel false, copies 2) of an unrelated item, and counted by the detector as a tenth of one."""
    await fetch(dsn, "TRUNCATE story, story_key, scored_event CASCADE")
    a, b = keys(95_000), keys(96_000)
    first = [(row(50, T0), a)]
    second = [(row(50, T0 + timedelta(minutes=1), "social"), b),  # same id, another feed, another story
              (row(51, T0 + timedelta(minutes=2), "social"), a)]  # a real copy of wire's w50
    got = []
    for batch in ([first + second] if together else [first, second]):
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                items = [st.Item(r[0], r[1], r[2], r[3], (), tuple(k)) for r, k in batch]
                got += await st.Stories().assign(conn, items, write_events=False)
                await store_scored(conn, [r for r, _ in batch], stories={
                    (x.source, x.id, x.published_at): (x.story_id, x.novel, x.copies) for x in got})
        finally:
            await conn.close()
    assert [(x.source, x.id, x.story_id, x.novel, x.copies) for x in got] == [
        ("wire", "w50", "wire/w50", True, 1), ("social", "w50", "social/w50", True, 1),
        ("social", "w51", "wire/w50", False, 2)]
    assert await fetch(dsn, "SELECT story_id, copies, source FROM story ORDER BY 1") == [
        ("social/w50", 1, "social"), ("wire/w50", 2, "wire")]
    assert await fetch(dsn, "SELECT source, id, story_id, novel FROM scored_event ORDER BY 1, 2") == [
        ("social", "w50", "social/w50", True), ("social", "w51", "wire/w50", False), ("wire", "w50", "wire/w50", True)]
