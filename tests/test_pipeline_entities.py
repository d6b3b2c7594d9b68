"""Entities through the worker's scoring step (issue 19), driven directly against a real
PostgreSQL with the real model and the shipped symbol directory: a wire headline that names a
company without a cashtag or tag reaches that ticker's rows, rollups and detector counts; an
item naming two companies stores both; a passing mention is stored but not counted; a replay
writes no entity row twice."""

import asyncio
import json

import asyncpg
import orjson
import pytest

from core.pg import libpq_dsn
from models.entities import Directory, Entity, Linker
from models.runtime import Scorer
from stream.counting import count_cells, ticker_keys
from stream.offline import event_tuple
from models.entity_scores import HEAD
from stream.pipeline import ITEM, ITEM_SHARED, BatchProcessor, Incoming  # noqa: F401
from stream.records import decode
from stream.sink import PostgresSink
from stream.watermark import PartitionClock
from tests.conftest import Recorder

pytestmark = pytest.mark.slow
BOEING = "Boeing grounds its 737 MAX fleet after a second crash in five months"
TWO = "Apple beats, Samsung slides"
PASSING = ("Fed holds rates steady as inflation cools. Bond yields barely moved and traders shrugged; analysts said "
           "the decision was widely expected, and in other news Boeing said deliveries were on track.")


def incoming(i: int, text: str, **kw) -> Incoming:
    ev = {"id": f"x{i}", "source": "wire-x", "text": text, "published_at": "2026-01-05T10:00:03Z", **kw}
    return Incoming(orjson.dumps(ev), None, "finsent.news", 0, i)


@pytest.fixture(scope="module")
def scorer():
    return Scorer.from_artifact()


@pytest.fixture
async def proc(migrated_db, scorer):
    sink, pub = PostgresSink(libpq_dsn(migrated_db), max_backoff_s=0.2), Recorder()
    p = BatchProcessor(scorer, sink, pub, PartitionClock(30, 5), run_blocking=lambda f, *a: asyncio.to_thread(f, *a),
                       linker=Linker(Directory.default()), entity_min_relevance=0.5)
    p.dsn = libpq_dsn(migrated_db)
    yield p
    await sink.close()


async def fetch(dsn, q, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(q, *args)]
    finally:
        await conn.close()


async def test_untagged_headline_reaches_its_ticker_and_two_names_both_stored(proc):
    batch = [incoming(1, BOEING), incoming(2, TWO), incoming(3, PASSING),
             incoming(4, "$ACME to the moon", tickers=["ZZZQ"])]
    await proc.process(batch)
    dsn = proc.dsn
    assert dict(await fetch(dsn, "SELECT id, tickers FROM scored_event")) == {
        "x1": ["BA"], "x2": ["AAPL", "SSNLF"], "x3": [], "x4": ["ACME", "ZZZQ"]}
    ents = await fetch(dsn, """SELECT event_id, ticker, name, relevance, sentiment_from, spans, sources, counted,
        directory_version FROM event_entity ORDER BY event_id, ticker""")
    version = proc.linker.directory.version
    ents = [(*e[:5], json.loads(e[5]), *e[6:]) for e in ents]
    assert ents[0] == ("x1", "BA", "Boeing", 0.75, ITEM, [[0, 6]], ["name"], True, version)
    by = {(e[0], e[1]): e for e in ents}
    assert set(by) == {("x1", "BA"), ("x2", "AAPL"), ("x2", "SSNLF"), ("x3", "BA"), ("x4", "ACME"), ("x4", "ZZZQ")}
    # two names in one item: each gets the target-aware head's reading of it, not the item's
    assert by[("x2", "AAPL")][4] == by[("x2", "SSNLF")][4] == HEAD
    (a_score,), (s_score,) = [await fetch(dsn, "SELECT score FROM event_entity WHERE event_id = 'x2' AND ticker = $1", t)
                              for t in ("AAPL", "SSNLF")]
    assert s_score[0] < a_score[0]  # "Apple beats, Samsung slides": Samsung read as the worse of the two
    assert by[("x3", "BA")][3] < 0.5 and by[("x3", "BA")][7] is False  # a passing mention: stored, not counted
    assert by[("x4", "ZZZQ")][2] is None and by[("x4", "ZZZQ")][7] is True  # a feed tag counts whatever it is
    # the per-minute ticker rollup and the detector's counts see BA once (the headline, not the passing mention)
    assert await fetch(dsn, "SELECT key, n FROM event_rollup_minute WHERE key_type = 'ticker' AND key = 'BA'") == [
        ("BA", 1)]
    keys = {k for k, _ in proc.publisher.records}
    assert {"ticker:BA", "ticker:AAPL", "ticker:SSNLF", "ticker:ACME", "ticker:ZZZQ"} <= keys
    ba = [orjson.loads(v) for k, v in proc.publisher.records if k == "ticker:BA"]
    assert [c[1] for rec in ba for c in rec["cells"]] == [1]
    # a replay of the batch writes no entity row and no count again
    n_records = len(proc.publisher.records)
    await proc.process(batch)
    assert len(await fetch(dsn, "SELECT 1 FROM event_entity")) == 6
    assert await fetch(dsn, "SELECT n FROM event_rollup_minute WHERE key_type = 'ticker' AND key = 'BA'") == [(1,)]
    assert len(proc.publisher.records) == n_records


async def test_entity_sentiment_feeds_its_own_ticker_key(proc, monkeypatch):
    """Where an entity's sentiment differs from the item's, its ticker rollup and its detector
    cell count the entity's (the switch to the model head changes only entity_sentiments)."""
    import stream.pipeline as pipeline

    def opposite(scorer, items, entities):
        return [[pipeline.EntityScore("negative" if e.ticker == "SSNLF" else "positive", -0.9 if e.ticker == "SSNLF"
                                      else 0.9, "entity_head") for e in ents] for ents in entities]

    monkeypatch.setattr(pipeline, "entity_sentiments", opposite)
    await proc.process([incoming(10, TWO)])
    rows = dict(await fetch(proc.dsn, """SELECT key, negatives FROM event_rollup_minute WHERE key_type = 'ticker'
        AND key IN ('AAPL', 'SSNLF')"""))
    assert rows == {"AAPL": 0, "SSNLF": 1}
    cells = {k: orjson.loads(v)["cells"] for k, v in proc.publisher.records}
    assert cells["ticker:SSNLF"][0][2] == 1 and cells["ticker:AAPL"][0][2] == 0


def test_offline_replay_counts_the_worker_keys():
    linker = Linker(Directory.default())
    ev = decode(orjson.dumps({"id": "o1", "source": "wire", "text": BOEING, "published_at": "2026-01-05T10:00:00Z"}),
                20_000)
    ents = linker.link(ev.text)
    t = event_tuple(ev, True, "Company | Product News", ents, 0.5)
    assert t[4] == ticker_keys(ents, 0.5) == ["BA"]
    assert set(count_cells([t], 10)) == {"topic:Company | Product News", "ticker:BA"}
    passing = [Entity("BA", "Boeing", 0.34, ((150, 156),), ("name",)), Entity("ACME", None, 0.2, (), ("cashtag",))]
    assert ticker_keys(passing, 0.5) == ["ACME"]
    assert ticker_keys([Entity("", None, 0.8, (), ("tag",)), Entity("X" * 17, None, 1.0, (), ("cashtag",))], 0.5) == []


async def test_entities_off_keys_items_on_their_tags_and_cashtags_only(migrated_db, scorer):
    """FINSENT_ENTITIES=false: no linking and no entity rows; an item's ticker keys are its feed
    tags, else its cashtags (as before entities); an untagged headline counts for no ticker."""
    from core.settings import Settings

    dsn = libpq_dsn(migrated_db)
    sink, pub = PostgresSink(dsn, max_backoff_s=0.2), Recorder()
    p = BatchProcessor(scorer, sink, pub, PartitionClock(30, 5), run_blocking=lambda f, *a: asyncio.to_thread(f, *a),
                       linker=Linker(Directory.default()), settings=Settings(entities=False))
    try:
        await p.process([incoming(1, BOEING), incoming(2, TWO), incoming(3, "$ACME to the moon"),
                         incoming(4, "$ACME to the moon", tickers=["ZZZQ"])])
    finally:
        await sink.close()
    assert dict(await fetch(dsn, "SELECT id, tickers FROM scored_event")) == {
        "x1": [], "x2": [], "x3": ["ACME"], "x4": ["ZZZQ"]}
    assert await fetch(dsn, "SELECT 1 FROM event_entity") == []
    keys = {k for k, _ in pub.records}
    assert {"ticker:ACME", "ticker:ZZZQ"} <= keys and not {"ticker:BA", "ticker:AAPL"} & keys
