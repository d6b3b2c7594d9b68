"""Items that arrive again in forms the table's key does not catch, driven through the worker's
scoring step against a real PostgreSQL (no Kafka; a stub scorer reads every item as a negative one,
so the counts are known):

- re-sent with another published_at (an RSS pubDate moved, a re-timed wire correction): the same
  item, one row, counted once by the rollups and the detector, not a copy of its own story;
- replayed after its day was archived and dropped (the row it duplicates is only in the archive):
  left out, not counted a second time; a truly late item of that day is still stored and counted."""

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from core import history
from core.history import Retention
from core.pg import libpq_dsn
from core.settings import Settings
from core.stories import Stories
from models.entities import Directory, Linker
from stream.pipeline import BatchProcessor, Incoming
from stream.sink import PostgresSink
from stream.watermark import PartitionClock
from tests.conftest import Recorder
from tests.test_pipeline_stories import NegativeScorer, fetch

pytestmark = pytest.mark.slow
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


def item(eid: str, at: datetime, text: str, offset: int, source: str = "rss-x") -> Incoming:
    ev = {"id": eid, "source": source, "text": text, "published_at": at.isoformat(), "tickers": ["QZR"]}
    return Incoming(orjson.dumps(ev), None, "finsent.news", 0, offset)


def processor(dsn: str, window_s: float, stories: bool = True) -> BatchProcessor:
    sink = PostgresSink(dsn, max_backoff_s=0.2, dedupe_window_s=window_s)
    p = BatchProcessor(NegativeScorer(), sink, Recorder(), PartitionClock(30, 5),
                       run_blocking=lambda f, *a: asyncio.to_thread(f, *a), linker=Linker(Directory.default()),
                       entity_min_relevance=0.5, settings=Settings(), stories=Stories() if stories else None)
    return p


def counted(records) -> float:
    """The detector's n for ticker:QZR over all count records published."""
    return sum(c[1] for key, raw in records if key == "ticker:QZR" for c in orjson.loads(raw)["cells"])


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.mark.parametrize("stories", [True, False], ids=["stories", "no-stories"])
async def test_a_retimed_item_is_stored_and_counted_once(migrated_db, stories):
    dsn = libpq_dsn(migrated_db)
    p = processor(dsn, 72 * 3600, stories)
    retimed0, dup0 = metric("finsent_duplicates_retimed_total"), metric("finsent_duplicates_total")
    try:
        first = "Qzrcorp shares plunge after regulators open a fraud probe"
        await p.process([item("a1", T0, first, 0)])
        # the same item two hours later (another batch, another day's partition is not needed), a new
        # one beside it, and within one batch an item sent twice with two times
        await p.process([item("a1", T0 + timedelta(hours=2), first + " (updated)", 1),
                         item("a2", T0 + timedelta(minutes=1), "Qzrcorp auditor resigns", 2),
                         item("b1", T0 + timedelta(minutes=2), "Qzrcorp misses its revenue estimates", 3),
                         item("b1", T0 + timedelta(minutes=50), "Qzrcorp misses its revenue estimates", 4)])
        # across a day boundary, the first copy stored a day later than the second
        await p.process([item("c1", T0 + timedelta(hours=20), "Qzrcorp cuts its dividend", 5)])
        await p.process([item("c1", T0 + timedelta(hours=9), "Qzrcorp cuts its dividend", 6)])
        rows = await fetch(dsn, "SELECT id, published_at, text FROM scored_event ORDER BY id")
        assert [(r["id"], r["published_at"]) for r in rows] == [
            ("a1", T0), ("a2", T0 + timedelta(minutes=1)), ("b1", T0 + timedelta(minutes=2)),
            ("c1", T0 + timedelta(hours=20))]
        assert rows[0]["text"] == first  # the first stored wins, as an exact replay's does
        n = await fetch(dsn, "SELECT sum(n) AS n FROM event_rollup_minute WHERE key_type = 'ticker' AND key = 'QZR'")
        assert n[0]["n"] == 4
        hourly = await fetch(dsn, "SELECT sum(n) AS n FROM event_rollup_hour WHERE key_type = 'source'")
        assert hourly[0]["n"] == 4
        assert counted(p.publisher.records) == pytest.approx(4.0)
        assert metric("finsent_duplicates_retimed_total") - retimed0 == 3
        assert metric("finsent_duplicates_total") - dup0 == 3
        if stories:
            copies = await fetch(dsn, "SELECT story_id, copies FROM story ORDER BY story_id")
            assert all(c["copies"] == 1 for c in copies), copies  # no item is a copy of itself
    finally:
        await p.sink.close()


async def test_outside_the_window_or_switched_off_each_time_is_a_row(migrated_db):
    dsn = libpq_dsn(migrated_db)
    p = processor(dsn, 3600, stories=False)
    off = processor(dsn, 0, stories=False)
    try:
        await p.process([item("x1", T0, "Qzrcorp opens a plant", 0)])
        await p.process([item("x1", T0 + timedelta(minutes=59), "Qzrcorp opens a plant", 1)])  # inside: left out
        await p.process([item("x1", T0 + timedelta(hours=3), "Qzrcorp opens a plant", 2)])  # outside: stored
        await off.process([item("y1", T0, "Qzrcorp names a chair", 3)])
        await off.process([item("y1", T0 + timedelta(minutes=5), "Qzrcorp names a chair", 4)])
        rows = await fetch(dsn, "SELECT id, published_at FROM scored_event ORDER BY id, published_at")
        assert [(r["id"], r["published_at"] - T0) for r in rows] == [
            ("x1", timedelta(0)), ("x1", timedelta(hours=3)), ("y1", timedelta(0)), ("y1", timedelta(minutes=5))]
    finally:
        await p.sink.close()
        await off.sink.close()


async def test_an_exact_replay_still_adds_nothing(migrated_db):
    dsn = libpq_dsn(migrated_db)
    p = processor(dsn, 72 * 3600)
    try:
        batch = [item(f"r{i}", T0 + timedelta(seconds=i), f"Qzrcorp story number {i} of the day", i) for i in range(20)]
        await p.process(batch)
        await p.process(batch)
        rows = await fetch(dsn, "SELECT count(*) AS n FROM scored_event")
        assert rows[0]["n"] == 20
        n = await fetch(dsn, "SELECT sum(n) AS n FROM event_rollup_minute WHERE key_type = 'ticker' AND key = 'QZR'")
        assert n[0]["n"] == 20
    finally:
        await p.sink.close()


async def rollup_n(dsn: str) -> int:
    return (await fetch(dsn, "SELECT coalesce(sum(n), 0) AS n FROM event_rollup_minute "
                             "WHERE key_type = 'ticker' AND key = 'QZR'"))[0]["n"]


async def test_a_replay_of_an_archived_and_dropped_day_is_not_counted_again(migrated_db, tmp_path):
    dsn = libpq_dsn(migrated_db)
    p = processor(dsn, 72 * 3600)
    day, root = T0.date(), tmp_path / "archive"
    policy = Retention(raw_days=30, archive_dir=root, minute_days=0, five_minute_days=0)
    batch = [item(f"h{i}", T0 + timedelta(minutes=i), f"Qzrcorp headline number {i} of the day", i) for i in range(12)]
    late = [item("late1", T0 + timedelta(hours=3), "Qzrcorp files a late report", 50)]
    archived0 = metric("finsent_duplicates_archived_total")
    try:
        await p.process(batch)
        assert await rollup_n(dsn) == 12

        async def upkeep():
            conn = await asyncpg.connect(dsn)
            try:
                for _ in range(10):
                    if not await history.upkeep(conn, policy, day + timedelta(days=40)):
                        return
            finally:
                await conn.close()

        await upkeep()
        assert (await fetch(dsn, "SELECT state FROM history_day WHERE day = $1", day))[0]["state"] == "dropped"
        assert (await fetch(dsn, "SELECT count(*) AS n FROM scored_event"))[0]["n"] == 0

        records = len(p.publisher.records)
        await p.process(batch[:5] + late + batch[5:])  # the feed replayed, one item of the day truly new
        assert await rollup_n(dsn) == 13
        assert [r["id"] for r in await fetch(dsn, "SELECT id FROM scored_event")] == ["late1"]
        assert counted(p.publisher.records[records:]) == pytest.approx(1.0)
        assert metric("finsent_duplicates_archived_total") - archived0 == 12

        # upkeep archives the day again (the union: 13 rows) and drops it; a replay of all 13 adds nothing
        await upkeep()
        assert history.read_manifest(root, day)["tables"]["scored_event"]["rows"] == 13
        await p.process(batch + late)
        assert await rollup_n(dsn) == 13
        assert metric("finsent_duplicates_archived_total") - archived0 == 25

        # an archive that cannot be read (a manifest of another shape, then none): the rows are stored
        # as before (counted again), and storage is never held for it
        history.manifest_file(root, day).write_text('{"tables": {"scored_event": {"rows": 13}}}')
        await p.process(late)
        assert await rollup_n(dsn) == 14
        with pytest.raises(history.HistoryError, match="entry lacks file"):  # nothing archived over it
            await upkeep()
        history.manifest_file(root, day).unlink()
        await p.process(batch[:1])
        assert await rollup_n(dsn) == 15
        assert not p.sink.errors
    finally:
        await p.sink.close()
