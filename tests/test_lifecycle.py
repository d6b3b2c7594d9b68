"""The worker's upkeep (stream/lifecycle.py, issue 22) on the real Postgres: days past raw
retention are archived and dropped through the worker's own pool; a day that cannot be dropped
safely (no archive directory) shows on /health's problem and in a metric until it can."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import asyncpg

from core.history import read_manifest
from core.pg import libpq_dsn
from core.settings import Settings
from stream.lifecycle import HISTORY_BEHIND, Upkeep
from stream.sink import PostgresSink


def settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


async def old_day(dsn: str, days_ago: int) -> date:
    day = datetime.now(timezone.utc).date() - timedelta(days=days_ago)
    t = datetime(day.year, day.month, day.day, 9, tzinfo=timezone.utc)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
        await conn.executemany("""INSERT INTO scored_event (source, id, published_at, text, ingested_at, topic,
            topic_confidence, sentiment, p_negative, p_neutral, p_positive, score, model_version) VALUES
            ('wire', $1, $2, 'old news', $2, 'macro', 1, 'neutral', 0, 1, 0, 0, 'm')""",
                               [(f"old-{i}", t + timedelta(minutes=i)) for i in range(25)])
    finally:
        await conn.close()
    return day


async def count(dsn: str, day: date) -> int:
    lo = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM scored_event WHERE published_at >= $1 AND published_at < $2",
                                   lo, lo + timedelta(days=1))
    finally:
        await conn.close()


async def test_upkeep_archives_and_drops_past_retention(migrated_db, tmp_path):
    dsn = libpq_dsn(migrated_db)
    days = [await old_day(dsn, d) for d in (45, 40, 3)]
    sink = PostgresSink(dsn)
    try:
        upkeep = Upkeep(sink, settings(retention_raw_days=30, archive_dir=tmp_path))
        await upkeep.run_once()
        assert upkeep.problem() == "" and HISTORY_BEHIND._value.get() == 0
        assert [await count(dsn, d) for d in days] == [0, 0, 25]
        assert read_manifest(tmp_path, days[0])["tables"]["scored_event"]["rows"] == 25
        assert read_manifest(tmp_path, days[2]) is None
    finally:
        await sink.close()


async def test_days_kept_for_want_of_an_archive_show_in_the_metric_and_a_failing_archive_on_health(
        migrated_db, tmp_path):
    dsn = libpq_dsn(migrated_db)
    day = await old_day(dsn, 50)
    sink = PostgresSink(dsn)
    try:
        upkeep = Upkeep(sink, settings(retention_raw_days=30))
        await upkeep.run_once()  # no archive directory: kept, nothing failed
        assert upkeep.problem() == "" and HISTORY_BEHIND._value.get() == 1
        assert await count(dsn, day) == 25
        blocked = tmp_path / "not-a-dir"
        blocked.write_text("a file where the archive folder should be")
        upkeep = Upkeep(sink, settings(retention_raw_days=30, archive_dir=blocked))
        await upkeep.run_once()  # the archive cannot be written: a failure, on /health
        assert "history upkeep failed" in upkeep.problem() and HISTORY_BEHIND._value.get() == 1
        assert await count(dsn, day) == 25
        upkeep = Upkeep(sink, settings(retention_raw_days=30, archive_dir=tmp_path))
        await upkeep.run_once()
        assert upkeep.problem() == "" and await count(dsn, day) == 0
    finally:
        await sink.close()


async def test_zero_retention_keeps_everything(migrated_db, tmp_path):
    dsn = libpq_dsn(migrated_db)
    day = await old_day(dsn, 400)
    sink = PostgresSink(dsn)
    try:
        upkeep = Upkeep(sink, settings(retention_raw_days=0, archive_dir=tmp_path))
        await upkeep.run_once()
        assert upkeep.problem() == "" and await count(dsn, day) == 25
    finally:
        await sink.close()
