"""Stories (core/stories.py): normalisation and copies (pure), and the shared index on the real
Postgres: assignment in the store transaction, replays, two workers at once, the horizon, upkeep,
migration 0007 down and up."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from core import stories as st
from core.events import store_scored
from core.pg import downgrade, libpq_dsn, migrate

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
STORY = "Acme shares plunge 18% after the SEC opens a fraud probe into its accounting"
OTHER = "Globex raises full-year guidance as cloud revenue beats estimates"


def copies(a: str, b: str, ka=(), kb=()) -> bool:
    ba, bb = st.Signer().bands([a, b], [ka, kb])
    return st.copies_of(ba, bb) and st.compatible(st.names_of(a, ka), st.names_of(b, kb))


# -- pure ----------------------------------------------------------------------------------------

def test_normalise_drops_what_a_repost_changes():
    raw = "RT @wire: BREAKING: $ACME shares plunge 18.5% to $140 &amp; more 🚨📉 https://t.co/AbC123"
    assert st.normalise(raw) == "acme shares plunge # to # more"
    assert st.cashtags(raw) == ["ACME"]
    assert st.normalise("JUST IN: Update: Fed holds rates") == "fed holds rates"


@pytest.mark.parametrize("variant", [
    "RT @markets: " + STORY,
    "BREAKING: " + STORY + " 😱 https://t.co/zz9",
    "🚨🚨 " + STORY.upper(),
    STORY.replace("18%", "23%"),  # an update of the story with a new number
    STORY + " - Reuters",
])
def test_copies_of_a_story_match(variant):
    assert copies(STORY, variant, ("ACME",), ("ACME",))


def test_template_about_another_company_is_not_a_copy():
    swapped = STORY.replace("Acme", "Initech")
    assert not copies(STORY, swapped, ("ACME",), ("INTC",))
    assert not copies("$ACME " + STORY, "$INTC " + swapped)  # cashtags alone say so too


def test_different_stories_do_not_match():
    assert not copies(STORY, OTHER, ("ACME",), ("GLBX",))
    assert not copies(STORY, "Acme names a new chief financial officer effective next month", ("ACME",), ("ACME",))


def test_band_keys_are_the_same_in_every_process():
    """Two workers must compute the same keys: a fixed permutation seed and a fixed hash."""
    keys = st.Signer().bands([STORY], [("ACME",)])[0]
    assert len(keys) == st.BANDS and len(set(keys)) == st.BANDS
    assert keys == st.Signer().bands([STORY], [("ACME",)])[0]
    assert keys != st.Signer(seed=2).bands([STORY], [("ACME",)])[0]


def test_match_probability_is_an_s_curve():
    lo, mid, hi = (st.match_probability(s) for s in (0.1, 0.4, 0.8))
    assert lo < 0.02 < mid < 0.9 < hi


# -- Postgres ----------------------------------------------------------------------------------

def row(i: int, text: str, at: datetime, source: str = "wire", tickers=("ACME",), topic: str = "M&A") -> tuple:
    """A scored_event row (core.events.COLUMNS order)."""
    return (source, f"s{i}", at, text, None, None, "en", list(tickers), at, at, topic, 0.9, "negative",
            0.8, 0.1, 0.1, -0.7, "v-test", False)


def item(r: tuple) -> st.Item:
    return st.Item(r[0], r[1], r[2], r[3], tuple(r[7]))


@pytest.fixture(scope="module")
def dsn(postgres):
    from tests.conftest import new_database

    return libpq_dsn(new_database(postgres, "st"))


async def store_and_assign(dsn: str, rows: list[tuple], stories: st.Stories | None = None) -> list[st.Assignment]:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await store_scored(conn, rows)
            return await (stories or st.Stories()).assign(conn, [item(r) for r in rows])
    finally:
        await conn.close()


async def fetch(dsn: str, query: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_a_batch_gets_stories_copies_and_novelty(dsn):
    rows = [row(1, STORY, T0), row(2, "RT @x: " + STORY, T0 + timedelta(seconds=5), "social"),
            row(3, OTHER, T0 + timedelta(seconds=6), tickers=("GLBX",)),
            row(4, STORY + " - Reuters", T0 + timedelta(seconds=9), "reuters")]
    got = await store_and_assign(dsn, rows[::-1])  # given in any order: decided in event-time order
    by_id = {a.id: a for a in got}
    assert [(by_id[i].story_id, by_id[i].novel, by_id[i].copies) for i in ("s1", "s2", "s3", "s4")] == [
        ("wire/s1", True, 1), ("wire/s1", False, 2), ("wire/s3", True, 1), ("wire/s1", False, 3)]
    stored = await fetch(dsn, "SELECT id, story_id, novel, copies FROM scored_event WHERE id = ANY($1) ORDER BY id",
                         ["s1", "s2", "s3", "s4"])
    assert [tuple(r) for r in stored] == [("s1", "wire/s1", True, 1), ("s2", "wire/s1", False, 2),
                                          ("s3", "wire/s3", True, 1), ("s4", "wire/s1", False, 3)]
    story = (await fetch(dsn, "SELECT copies, sources, keys, first_at FROM story WHERE story_id = 'wire/s1'"))[0]
    assert story["copies"] == 3 and sorted(story["sources"]) == ["reuters", "social", "wire"]
    assert story["keys"] == ["ACME"] and story["first_at"] == T0

    # a later batch (another transaction) joins the story from the index
    later = await store_and_assign(dsn, [row(5, "BREAKING: " + STORY.replace("18%", "25%"), T0 + timedelta(hours=2))])
    assert (later[0].story_id, later[0].novel, later[0].copies) == ("wire/s1", False, 4)
    # the offline replay of the same items decides the same
    offline = st.Stories().assign_offline([item(r) for r in rows[::-1]])
    assert offline == got


async def test_a_replayed_batch_changes_nothing(dsn):
    rows = [row(10, "Initech recalls 2 million routers over fire risk", T0 + timedelta(minutes=1), tickers=("INTC",)),
            row(11, "RT @y: Initech recalls 2 million routers over fire risk", T0 + timedelta(minutes=2),
                tickers=("INTC",))]
    first = await store_and_assign(dsn, rows)
    again = await store_and_assign(dsn, rows)  # the worker crashed after commit, before the ack
    assert again == first and [a.copies for a in first] == [1, 2]
    assert (await fetch(dsn, "SELECT copies FROM story WHERE story_id = 'wire/s10'"))[0]["copies"] == 2
    # a batch with the same event twice counts it once
    dup = await store_and_assign(dsn, [row(12, "Initech recalls 2 million routers over fire risk - AP",
                                            T0 + timedelta(minutes=3), tickers=("INTC",))] * 2)
    assert dup[0] == dup[1] and dup[0].copies == 3


async def test_two_workers_at_once_find_one_story(dsn):
    """Two store transactions with copies of a new story, concurrently: one story, one novel item.
    (Different topics, tickers and minutes: their rollup rows do not serialise them already.)"""
    text = "Umbrella Corp halts trading after its chief executive resigns amid a bribery inquiry"
    at = T0 + timedelta(minutes=10)
    conns = [await asyncpg.connect(dsn) for _ in range(2)]
    gate = asyncio.Event()

    async def worker(conn, i: int, prefix: str):
        r = row(20 + i, prefix + text, at + timedelta(minutes=i), source=f"w{i}", tickers=(), topic=f"t{i}")
        async with conn.transaction():
            await store_scored(conn, [r])
            await gate.wait()
            got = await st.Stories().assign(conn, [item(r)])
            await asyncio.sleep(0.2)  # hold the transaction open: the other must wait for the commit
            return got[0]

    try:
        tasks = [asyncio.create_task(worker(c, i, p)) for i, (c, p) in enumerate(zip(conns, ("", "RT @z: ")))]
        await asyncio.sleep(0.1)
        gate.set()
        a, b = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        for c in conns:
            await c.close()
    assert a.story_id == b.story_id and {a.novel, b.novel} == {True, False} and {a.copies, b.copies} == {1, 2}
    assert (await fetch(dsn, "SELECT copies FROM story WHERE story_id = $1", a.story_id))[0]["copies"] == 2


async def test_the_horizon_starts_a_new_story(dsn):
    text = "Hooli fined $2 billion by EU regulators over search bundling"
    first = await store_and_assign(dsn, [row(30, text, T0 - timedelta(hours=80), tickers=("HOOL",))])
    inside = await store_and_assign(dsn, [row(31, "RT @q: " + text, T0 - timedelta(hours=9), tickers=("HOOL",))])
    after = await store_and_assign(dsn, [row(32, text + " - AP", T0 + timedelta(minutes=30), tickers=("HOOL",))])
    assert first[0].novel and inside[0].story_id == "wire/s30" and not inside[0].novel
    assert after[0].story_id == "wire/s32" and after[0].novel  # 80.5 h after the first: a new story


async def test_upkeep_truncates_only_expired_slots(dsn):
    conn = await asyncpg.connect(dsn)
    try:
        today = datetime.now(timezone.utc).date()
        live = await conn.fetchval("SELECT count(*) FROM story_key WHERE day >= $1", today - timedelta(days=3))
        stories = await conn.fetchval("SELECT count(*) FROM story WHERE day >= $1", today - timedelta(days=3))
        assert live > 0 and stories > 0
        old_slot = st.slot_of(today - timedelta(days=4))
        await conn.execute("INSERT INTO story_key VALUES (42, $1, 'old', $2, $3)", old_slot,
                           today - timedelta(days=4), T0 - timedelta(days=4))
        await conn.execute("INSERT INTO story VALUES ($1, 'old', $2, $3, $3, 'wire', '{}', 1, '{wire}')", old_slot,
                           today - timedelta(days=4), T0 - timedelta(days=4))
        assert await st.upkeep(conn, today) == [old_slot]
        assert await conn.fetchval("SELECT count(*) FROM story_key WHERE story_id = 'old'") == 0
        assert await conn.fetchval("SELECT count(*) FROM story WHERE story_id = 'old'") == 0
        assert await conn.fetchval("SELECT count(*) FROM story_key WHERE day >= $1",
                                   today - timedelta(days=3)) == live
        assert await conn.fetchval("SELECT count(*) FROM story WHERE day >= $1", today - timedelta(days=3)) == stories
    finally:
        await conn.close()


async def test_a_key_of_a_story_past_the_horizon_is_taken_over(dsn):
    """A band key whose story is past the horizon goes to the new story that has it: a copy of the
    new story finds it by that key too (one key table, no day slots to keep the old one apart)."""
    at = T0 + timedelta(minutes=50)
    keys = [7_000 + b for b in range(st.BANDS)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO story_key VALUES ($1, $2, 'stale', $3, $4)", keys[0],
                           st.slot_of((at - timedelta(hours=80)).date()), (at - timedelta(hours=80)).date(),
                           at - timedelta(hours=80))
        rows = [row(50, "a new story", at), row(51, "a new story, again", at + timedelta(minutes=1))]
        items = [st.Item(*r[:4], tuple(r[7]), bands=tuple(keys)) for r in rows]
        async with conn.transaction():
            await store_scored(conn, rows[:1])
            first = await st.Stories().assign(conn, items[:1])
        assert await conn.fetchval("SELECT story_id FROM story_key WHERE band = $1", keys[0]) == "wire/s50"
        items[1] = st.Item(*rows[1][:4], tuple(rows[1][7]), bands=tuple(keys[:1] + [1, 2, 3] + keys[4:6]))
        async with conn.transaction():  # 3 equal keys, one of them the key taken over
            await store_scored(conn, rows[1:])
            second = await st.Stories().assign(conn, items[1:])
    finally:
        await conn.close()
    assert first[0].novel and (second[0].story_id, second[0].novel) == ("wire/s50", False)


def test_migrations_0007_0009_and_0010_down_and_up(postgres):
    """0010's BRIN time index goes back to a B-tree; 0009's key table goes back to 0007's day slots and comes again with its keys; 0007 down
    and up removes and adds the story columns."""
    from tests.conftest import new_database

    url = new_database(postgres, "st7")
    one = lambda sql: asyncio.run(fetch(libpq_dsn(url), sql))  # noqa: E731
    asyncio.run(fetch(libpq_dsn(url), "INSERT INTO story_key VALUES (5, $1, 'k', $2, $3)",
                      st.slot_of(T0.date()), T0.date(), T0))
    kind = "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'ix_story_key_first_at'"
    assert one(kind)[0]["amname"] == "brin"  # 0010: the purge's time index costs next to nothing per key
    downgrade(url, "0009")
    assert one(kind)[0]["amname"] == "btree"
    downgrade(url, "0008")
    assert [tuple(r) for r in one("SELECT slot, band, story_id FROM story_band")] == [(st.slot_of(T0.date()), 5, "k")]
    assert one("SELECT to_regclass('story_key') AS t")[0]["t"] is None
    downgrade(url, "0006")
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'scored_event'"
    assert "story_id" not in {r["column_name"] for r in one(columns)}
    migrate(url)
    assert {"story_id", "novel", "copies"} <= {r["column_name"] for r in one(columns)}
    assert one("SELECT count(*) AS n FROM story_key")[0]["n"] == 0
    assert one(kind)[0]["amname"] == "brin"


async def test_stories_sharing_a_band_key_in_one_batch(dsn):
    """Two different stories with one equal band key (fewer than MIN_BANDS: not copies) in one
    batch and the same day: both novel, the key stays the first's, a copy of the second still
    finds it by its other keys."""
    at = T0 + timedelta(minutes=40)
    a = [9_000 + b for b in range(st.BANDS)]
    b = [9_000] + [9_500 + x for x in range(st.BANDS - 1)]
    rows = [row(40, "first story", at), row(41, "second story", at + timedelta(seconds=1)),
            row(42, "second story, again", at + timedelta(seconds=2))]
    items = [st.Item(*r[:4], tuple(r[7]), bands=tuple(bb)) for r, bb in zip(rows, (a, b, b[1:] + [1]))]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await store_scored(conn, rows)
            got = await st.Stories().assign(conn, items)
        owner = await conn.fetchval("SELECT story_id FROM story_key WHERE band = 9000")
    finally:
        await conn.close()
    assert [(g.story_id, g.novel) for g in got] == [("wire/s40", True), ("wire/s41", True), ("wire/s41", False)]
    assert owner == "wire/s40"


@pytest.mark.parametrize("similarity", [0.1, 0.2, 0.4, 0.6, 0.8])
def test_minhash_is_unbiased(similarity):
    """Two sets agree on a permutation as often as their Jaccard similarity says: over 600 random
    pairs of 30-token sets at each similarity, every permutation's agreement rate is within
    binomial noise of the exact Jaccard, and so is the mean over all of them."""
    import random

    rng, signer = random.Random(int(similarity * 100)), st.Signer()
    size, n = 30, 600
    common = round(2 * size * similarity / (1 + similarity))
    sets = []
    for _ in range(n):
        toks = [rng.getrandbits(64).to_bytes(8, "little") for _ in range(2 * size - common)]
        sets += [toks[:size], toks[:common] + toks[size:]]
    exact = common / (2 * size - common)
    sig = signer.sign_sets(sets)
    agree = (sig[0::2] == sig[1::2]).mean(axis=0)  # per permutation, over the pairs
    noise = (exact * (1 - exact) / n) ** 0.5
    assert abs(agree.mean() - exact) < 3 * noise / len(agree) ** 0.5 + 0.003
    assert abs(agree - exact).max() < 4.5 * noise


def test_headlines_sharing_a_company_are_not_copies():
    """Different headlines about one company stay different stories however many there are (each
    is compared with every earlier story of the company): the simulator's 32 planted-surge
    headlines for each of its 20 companies, within minutes, are 32 stories each; a copy of each,
    after them all, joins its own."""
    from stream.simulate import COMPANIES, surge_headline

    for ticker in COMPANIES:
        heads = [surge_headline(j, ticker, 5 + j % 9) for j in range(32)]
        copies_ = [f"RT @desk: {h} https://t.co/x{j}" for j, h in enumerate(heads)]
        items = [st.Item("wire", f"{ticker}{j}", T0 + timedelta(seconds=4 * j), h, (ticker,))
                 for j, h in enumerate(heads + copies_)]
        got = st.Stories().assign_offline(items)
        assert len({a.story_id for a in got[:32]}) == 32, ticker
        assert [a.story_id for a in got[32:]] == [a.story_id for a in got[:32]], ticker


def test_posts_without_words_are_copies_only_of_the_same_characters():
    """Emoji-only and symbol-only posts have no word and no company to compare: they all shingled to
    one token, so every such post after the first was a copy of one story (weighed next to nothing
    by the detector for 72 h), whatever it showed. Now only the same characters are a copy."""
    t = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    texts = ["🚀🚀🚀", "📉📉 😱", "🚀🚀🚀", "🚀 🚀 🚀", "!!!", "📉📉😱", "$"]
    got = st.Stories().assign_offline([st.Item("social", f"p{i}", t + timedelta(seconds=i), x)
                                       for i, x in enumerate(texts)])
    assert [(a.story_id, a.novel) for a in got] == [
        ("social/p0", True), ("social/p1", True), ("social/p0", False), ("social/p0", False),
        ("social/p4", True), ("social/p1", False), ("social/p6", True)]
