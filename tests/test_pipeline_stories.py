"""Stories through the worker's scoring step (issue 20), driven directly against a real PostgreSQL
(no Kafka; the scorer reads every item as a negative Legal one, so that the counts are known):
copies of one syndicated headline from 30 sources become one story (story_id, novel, copies
stored), weigh at most 1 + story_copy_cap in the count records and do not alert a quiet key,
while 15 different negative stories on another key do; the alert row, its alert_event payload
and the finsent.alerts record list the stories; the offline replay of the stored rows decides
the same alerts; a replayed batch keeps its stories and adds nothing."""

import asyncio
import time
from datetime import datetime, timedelta, timezone

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from core.pg import libpq_dsn
from core.settings import Settings
from core.stories import LOCK_ID, Stories
from models.entities import Directory, Linker
from models.runtime import Prediction
from stream.app import detector_config
from stream.detector import KeyState, SpikeDetector
from stream.offline import STORED_EVENTS_SQL, replay, stored_event
from stream.pipeline import BatchProcessor, Incoming
from stream.records import Counts
from stream.sink import DbTimeouts, PostgresSink
from stream.watermark import PartitionClock
from tests.conftest import Recorder

pytestmark = pytest.mark.slow
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
SYNDICATED = "Qzacorp shares plunge {n}% after regulators open a fraud probe into its accounting"
PREFIXES = ["", "BREAKING: ", "RT @wire: ", "Just in: ", "JUST IN | ", "Update: "]
DISTINCT = [
    "Qzbcorp recalls two million heaters over fire risk", "Qzbcorp chief financial officer resigns abruptly",
    "Qzbcorp misses quarterly revenue estimates by a wide margin", "Credit agency cuts Qzbcorp rating to junk",
    "Qzbcorp faces class action lawsuit from former employees", "Qzbcorp factory shut down after chemical leak",
    "Pentagon cancels its biggest drone order with Qzbcorp, citing repeated delivery delays",
    "Qzbcorp suspends dividend as cash dwindles", "Union announces nationwide strike at Qzbcorp plants",
    "Qzbcorp auditor raises going concern doubts", "Qzbcorp data breach exposes millions of customer records",
    "Short seller accuses Qzbcorp of inflating sales", "Qzbcorp slashes full year guidance citing weak demand",
    "Qzbcorp bondholders reject restructuring proposal", "Regulators fine Qzbcorp for antitrust violations"]


class NegativeScorer:
    version = "stub-negative"

    def predict(self, texts):
        return [Prediction("Legal", 0.9, {"Legal": 0.9}, "negative", {"negative": 0.9, "neutral": 0.05, "positive": 0.05},
                           -0.85, self.version) for _ in texts]


def feed() -> list[tuple[datetime, Incoming]]:
    """30 copies of one story on QZA (a prefix, a link, the figure changing) and 15 stories on QZB."""
    out = []
    for i in range(30):
        text = PREFIXES[i % len(PREFIXES)] + SYNDICATED.format(n=12 + i % 3) + f" https://t.co/x{i}"
        out.append((T0 + timedelta(seconds=4 * i), f"src{i}", f"s{i}", text, ["QZA"]))
    for i, text in enumerate(DISTINCT):
        out.append((T0 + timedelta(seconds=7 * i + 1), f"wire{i}", f"d{i}", text, ["QZB"]))
    out.sort()
    return [Incoming(orjson.dumps({"id": eid, "source": src, "text": text, "published_at": t.isoformat(),
                                   "tickers": tickers}), None, "finsent.news", 0, n)
            for n, (t, src, eid, text, tickers) in enumerate(out)]


@pytest.fixture
async def proc(migrated_db):
    settings = Settings(detector_story_copy_weight=0.1, detector_story_copy_cap=1.0)
    sink, pub = PostgresSink(libpq_dsn(migrated_db), max_backoff_s=0.2), Recorder()
    p = BatchProcessor(NegativeScorer(), sink, pub, PartitionClock(30, 5),
                       run_blocking=lambda f, *a: asyncio.to_thread(f, *a), linker=Linker(Directory.default()),
                       entity_min_relevance=0.5, settings=settings, stories=Stories())
    p.dsn, p.cfg = libpq_dsn(migrated_db), settings
    yield p
    await sink.close()


async def fetch(dsn, q, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(q, *args)
    finally:
        await conn.close()


def detect(records: list[tuple[str, bytes]], settings: Settings) -> list:
    """The worker's detector fed the worker's count records, then the watermark past the feed."""
    det, states, out = SpikeDetector(detector_config(settings)), {}, []
    for batch, (key, raw) in enumerate(records):
        msg = orjson.loads(raw)
        st = states.setdefault(key, KeyState())
        out += det.add(st, key, Counts(key, msg["cells"]).detector_cells(), batch, None)[0]
    end = (T0 + timedelta(minutes=10)).timestamp()
    for key, st in states.items():
        out += det.advance(st, key, end)
    return out


async def test_copies_are_one_story_weighted_and_many_stories_alert(proc):
    items = feed()
    for i in range(0, len(items), 15):
        await proc.process(items[i:i + 15])
    rows = {r["id"]: r for r in await fetch(proc.dsn, "SELECT id, story_id, novel, copies FROM scored_event")}
    assert len(rows) == 45
    copies = sorted((r for k, r in rows.items() if k.startswith("s")), key=lambda r: r["copies"])
    assert {r["story_id"] for r in copies} == {"src0/s0"}  # the first copy founds the story
    assert [r["copies"] for r in copies] == list(range(1, 31))
    assert [r["id"] for r in copies if r["novel"]] == ["s0"]
    assert all(rows[f"d{i}"]["story_id"] == f"wire{i}/d{i}" and rows[f"d{i}"]["novel"] for i in range(15))
    story = (await fetch(proc.dsn, "SELECT copies, cardinality(sources) AS n FROM story WHERE story_id = 'src0/s0'"))[0]
    assert story["copies"] == 30 and story["n"] == 16  # sources listed up to core.stories.MAX_SOURCES

    cells = {}
    for key, raw in proc.publisher.records:
        for c in orjson.loads(raw)["cells"]:
            cells.setdefault(key, []).append(c)
    n_of = {k: sum(c[1] for c in v) for k, v in cells.items()}
    assert n_of["ticker:QZA"] == pytest.approx(2.0)  # 1 + at most story_copy_cap for the 29 copies
    assert n_of["ticker:QZB"] == 15
    qza_stories = {}
    for c in cells["ticker:QZA"]:
        for sid, (k, sources) in c[5].items():
            qza_stories.setdefault(sid, [0, set()])[0] += k
            qza_stories[sid][1].update(sources)
    assert list(qza_stories) == ["src0/s0"] and qza_stories["src0/s0"][0] == 30 and len(qza_stories["src0/s0"][1]) == 30

    worker = detect(proc.publisher.records, proc.cfg)
    opened = [d for d in worker if d.action == "open"]
    assert [d.key for d in opened] == ["ticker:QZB"], [(d.key, d.n, d.negatives) for d in worker]
    alert = opened[0]
    assert len(alert.stories) >= 5 and len({s[0] for s in alert.stories}) == len(alert.stories)
    assert {s[0] for s in alert.stories} <= {f"wire{i}/d{i}" for i in range(15)}
    assert all(copies == 1 and len(sources) == 1 for _, copies, sources in alert.stories)

    record = await proc.sink.write_decision(alert)
    assert record.stories and record.stories[0].keys() == {"story_id", "copies", "sources"}
    row = (await fetch(proc.dsn, "SELECT stories FROM alert WHERE key = 'QZB'"))[0]
    assert orjson.loads(row["stories"]) == record.stories
    payload = (await fetch(proc.dsn, "SELECT payload FROM alert_event"))[0]["payload"]
    assert orjson.loads(payload)["stories"] == record.stories

    stored = [stored_event(tuple(r)) for r in await fetch(proc.dsn, STORED_EVENTS_SQL)]
    offline = replay(stored, detector_config(proc.cfg), partitions=1, batch=15)
    assert sorted((d.key, d.action, d.alert_start) for d in offline.decisions) == \
        sorted((d.key, d.action, d.alert_start) for d in worker)


async def test_replayed_batch_keeps_its_stories_and_counts_nothing(proc):
    items = feed()
    await proc.process(items[:20])
    before = sorted(tuple(r) for r in await fetch(proc.dsn, "SELECT id, story_id, novel, copies FROM scored_event"))
    sent = len(proc.publisher.records)
    await proc.process(items[:20])  # a rebalance re-reads from the committed offset
    after = sorted(tuple(r) for r in await fetch(proc.dsn, "SELECT id, story_id, novel, copies FROM scored_event"))
    assert after == before and len(proc.publisher.records) == sent
    await proc.process(items[10:])  # overlapping: the new rows join the stories the old ones founded
    rows = await fetch(proc.dsn, "SELECT story_id, max(copies) AS c, count(*) AS n FROM scored_event "
                       "WHERE id LIKE 's%' GROUP BY story_id")
    assert [(r["story_id"], r["c"], r["n"]) for r in rows] == [("src0/s0", 30, 30)]


async def test_a_session_holding_the_stories_lock_holds_the_batch_loudly_within_its_bound(migrated_db):
    """The assignment's advisory lock (core.stories.LOCK_ID) held elsewhere (a stuck backfill, a
    worker's transaction that never ends): the batch waits at most lock_timeout per try, and the
    sink names the lock in what /health serves, with the halted gauge and the retry counter up,
    instead of a silent wait; once the holder's session ends the batch is stored with its stories."""
    dsn = libpq_dsn(migrated_db)
    sink = PostgresSink(dsn, max_backoff_s=0.2, timeouts=DbTimeouts(lock_s=1.0))
    p = BatchProcessor(NegativeScorer(), sink, Recorder(), PartitionClock(30, 5),
                       run_blocking=lambda f, *a: asyncio.to_thread(f, *a), linker=Linker(Directory.default()),
                       entity_min_relevance=0.5, settings=Settings(), stories=Stories())
    retries = REGISTRY.get_sample_value("finsent_db_retries_total", {"kind": "transient"}) or 0.0
    holder = await asyncpg.connect(dsn)
    await holder.execute("SELECT pg_advisory_lock($1)", LOCK_ID)  # a session lock: held until the session ends
    try:
        t0 = time.monotonic()
        storing = asyncio.ensure_future(p.process(feed()[:5]))
        while "scored_event" not in sink.errors and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.05)
        waited = time.monotonic() - t0
        assert "LockNotAvailable" in sink.errors.get("scored_event", ""), sink.errors
        assert waited < 1.0 + 3.0, f"the first lock wait took {waited:.1f} s against a 1 s lock_timeout"
        assert "scored_event" in sink.last_error and REGISTRY.get_sample_value("finsent_halted") == 1
        assert REGISTRY.get_sample_value("finsent_db_retries_total", {"kind": "transient"}) > retries
        assert not storing.done()  # held, not dropped: nothing is acked unstored
    finally:
        await holder.close()
    await asyncio.wait_for(storing, 15)
    assert sink.errors == {} and REGISTRY.get_sample_value("finsent_halted") == 0
    rows = await fetch(dsn, "SELECT count(*) AS n, count(story_id) AS s FROM scored_event")
    assert (rows[0]["n"], rows[0]["s"]) == (5, 5)
    await sink.close()
