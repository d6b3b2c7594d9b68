"""History lifecycle (issue 22) on the real Postgres: a day archived to Parquet, verified, dropped
and restored gives back the same rows; a crash between archive and drop loses nothing; upkeep
across the retention boundary drops only what is past it, one day per step, never unarchived."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest

from core import history
from core.history import HistoryError, Retention
from core.pg import libpq_dsn

TODAY = date(2026, 12, 6)


async def connect(url: str):
    return await asyncpg.connect(libpq_dsn(url))


async def fill_day(conn, day: date, n: int, source: str = "wire") -> None:
    await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    events, entities = [], []
    for i in range(n):
        t = start + timedelta(seconds=(i * 86_399) // max(n - 1, 1))
        sent = ("negative", "neutral", "positive")[i % 3]
        events.append((source, f"{day}-{i}", t, f"text {i} $ACME ünïcode 'quote' \"dq\" \\ back", None if i % 2 else f"title {i}",
                       None, "en", ["ACME", "XYZ"] if i % 4 == 0 else [], t, "macro", 0.5 + i % 5 / 10, sent,
                       0.2, 0.3, 0.5, (i % 7) / 7 - 0.5, "finsent-test", i % 9 == 0))
        if i % 2 == 0:
            entities.append((source, f"{day}-{i}", t, "ACME", "Acme Corp", 0.9, sent, 0.1, "item",
                             json.dumps([[0, 4]]), ["cashtag"], True, "test-1"))
    await conn.copy_records_to_table("scored_event", records=events, columns=[
        "source", "id", "published_at", "text", "title", "url", "lang", "tickers", "ingested_at", "topic",
        "topic_confidence", "sentiment", "p_negative", "p_neutral", "p_positive", "score", "model_version", "truncated"])
    await conn.copy_records_to_table("event_entity", records=entities, columns=[
        "source", "event_id", "published_at", "ticker", "name", "relevance", "sentiment", "score", "sentiment_from",
        "spans", "sources", "counted", "directory_version"])


async def rows_of(conn, table: str, day: date) -> list:
    lo = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return [tuple(r) for r in await conn.fetch(
        f"SELECT * FROM {table} WHERE published_at >= $1 AND published_at < $2 ORDER BY 1, 2, 3",
        lo, lo + timedelta(days=1))]


async def test_archive_verify_drop_restore_gives_the_same_rows(migrated_db, tmp_path):
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 1234)
    before = {t: await rows_of(conn, t, day) for t in history.DAY_TABLES}
    assert len(before["scored_event"]) == 1234 and len(before["event_entity"]) == 617

    report = await history.archive_day(conn, tmp_path, day)
    assert report.rows == {"scored_event": 1234, "event_entity": 617}
    manifest = history.read_manifest(tmp_path, day)
    assert manifest["tables"]["scored_event"]["rows"] == 1234
    assert (await history.verify_day(conn, tmp_path, day)).rows["scored_event"] == 1234

    await history.drop_day(conn, day, tmp_path)
    assert history.partition_name("scored_event", day) not in {
        p for ps in (await history.day_partitions(conn)).values() for p in ps}
    assert await rows_of(conn, "scored_event", day) == []
    await history.verify_day(conn, tmp_path, day)  # the archive alone still verifies

    restored = await history.restore_day(conn, tmp_path, day)
    assert restored.rows == {"scored_event": 1234, "event_entity": 617}
    after = {t: await rows_of(conn, t, day) for t in history.DAY_TABLES}
    assert after == before
    # restoring twice adds nothing
    assert (await history.restore_day(conn, tmp_path, day)).rows == {"scored_event": 0, "event_entity": 0}
    await conn.close()


async def test_verify_catches_a_changed_file_and_rows_written_after_the_archive(migrated_db, tmp_path):
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=41)
    await fill_day(conn, day, 50)
    await history.archive_day(conn, tmp_path, day)
    # a row stored after the archive was written: dropping now would lose it
    await fill_day(conn, day, 1, source="late")
    with pytest.raises(HistoryError, match="rows in the database"):
        await history.drop_day(conn, day, tmp_path)
    assert len(await rows_of(conn, "scored_event", day)) == 51
    await history.archive_day(conn, tmp_path, day)
    await history.verify_day(conn, tmp_path, day)
    # a corrupted file is refused
    path = history.day_file(tmp_path, "scored_event", day)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HistoryError, match="checksum"):
        await history.drop_day(conn, day, tmp_path)
    assert len(await rows_of(conn, "scored_event", day)) == 51
    await conn.close()


async def test_a_crash_between_archive_and_drop_loses_nothing(migrated_db, tmp_path, monkeypatch):
    conn = await connect(migrated_db)
    old = TODAY - timedelta(days=45)
    await fill_day(conn, old, 300)
    policy = Retention(raw_days=30, archive_dir=tmp_path)

    # a crash while the manifest is being written: the files are there, the manifest is not
    real = history._write_atomic

    def crash(path, data):
        raise OSError("disk gone")

    monkeypatch.setattr(history, "_write_atomic", crash)
    with pytest.raises(OSError):
        await history.upkeep(conn, policy, TODAY)
    assert history.read_manifest(tmp_path, old) is None
    assert len(await rows_of(conn, "scored_event", old)) == 300

    # a crash after the archive, inside the drop: the transaction rolls back, the rows stay
    monkeypatch.setattr(history, "_write_atomic", real)

    async def fail_record(conn, day, state, root, restore_days=7):
        if state == "dropped":
            raise ConnectionError("killed")

    monkeypatch.setattr(history, "_record", fail_record)
    with pytest.raises(ConnectionError):
        await history.upkeep(conn, policy, TODAY)
    assert history.read_manifest(tmp_path, old) is not None
    assert len(await rows_of(conn, "scored_event", old)) == 300

    # the next step verifies the archive it finds (no second archive) and drops
    monkeypatch.undo()
    archived_at = history.read_manifest(tmp_path, old)["written_at"]
    done = await history.upkeep(conn, policy, TODAY)
    assert any("dropped" in line for line in done) and not any("archived" in line for line in done)
    assert history.read_manifest(tmp_path, old)["written_at"] == archived_at
    assert await rows_of(conn, "scored_event", old) == []
    await history.restore_day(conn, tmp_path, old)
    assert len(await rows_of(conn, "scored_event", old)) == 300
    await conn.close()


async def test_upkeep_across_the_retention_boundary(migrated_db, tmp_path):
    conn = await connect(migrated_db)
    days = [TODAY - timedelta(days=d) for d in (33, 31, 30, 29, 1)]
    for d in days:
        await fill_day(conn, d, 20)
    # a late row of an old day that landed in the default partition (no day partition for it)
    stray = TODAY - timedelta(days=60)
    t = datetime(stray.year, stray.month, stray.day, 12, tzinfo=timezone.utc)
    await conn.execute("""INSERT INTO scored_event (source, id, published_at, text, ingested_at, topic, topic_confidence,
        sentiment, p_negative, p_neutral, p_positive, score, model_version) VALUES
        ('late', 'x', $1, 'late', $1, 'macro', 1, 'neutral', 0, 1, 0, 0, 'm')""", t)
    policy = Retention(raw_days=30, archive_dir=tmp_path, minute_days=0, five_minute_days=0)
    dropped = []
    for _ in range(6):
        dropped += [line.split()[0] for line in await history.upkeep(conn, policy, TODAY) if "dropped" in line]
    # one day per step, oldest first; day 30 (today - 30) is the boundary and stays
    assert dropped == [str(stray), str(days[0]), str(days[1])]
    left = set(await history.day_partitions(conn))
    assert {days[2], days[3], days[4]} <= left and not {stray, days[0], days[1]} & left
    assert await conn.fetchval("SELECT count(*) FROM scored_event_default WHERE published_at < $1",
                               t + timedelta(days=1)) == 0
    # pinned after a restore: upkeep leaves it until the pin ends
    await history.restore_day(conn, tmp_path, days[0], restore_days=7)
    assert not [line for line in await history.upkeep(conn, policy, TODAY) if "dropped" in line]
    assert len(await rows_of(conn, "scored_event", days[0])) == 20
    await conn.close()


async def test_no_archive_directory_refuses_to_drop(migrated_db):
    conn = await connect(migrated_db)
    old = TODAY - timedelta(days=90)
    await fill_day(conn, old, 10)
    with pytest.raises(HistoryError, match="FINSENT_ARCHIVE_DIR"):
        await history.upkeep(conn, Retention(raw_days=30), TODAY)
    assert len(await rows_of(conn, "scored_event", old)) == 10
    done = await history.upkeep(conn, Retention(raw_days=30, drop_unarchived=True), TODAY)
    assert done and "dropped" in done[0]
    assert await rows_of(conn, "scored_event", old) == []
    await conn.close()


async def test_rollups_past_retention_are_deleted_in_bounded_steps(migrated_db):
    conn = await connect(migrated_db)
    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    rows = [("ticker", "ACME", now - timedelta(days=d, minutes=m), 1, 0, 1, 0, 0.0)
            for d in (100, 95, 10) for m in range(30)]
    await conn.copy_records_to_table("event_rollup_minute", records=rows, columns=[
        "key_type", "key", "minute", "n", "negatives", "neutrals", "positives", "score_sum"])
    policy = Retention(raw_days=0, minute_days=90, five_minute_days=0)
    done = await history.upkeep(conn, policy, TODAY, rollup_batch=40)
    assert done == ["event_rollup_minute: 40 rows past 90 days deleted"]
    await history.upkeep(conn, policy, TODAY, rollup_batch=40)
    assert await conn.fetchval("SELECT count(*) FROM event_rollup_minute") == 30
    assert await conn.fetchval("SELECT min(minute) FROM event_rollup_minute") > now - timedelta(days=11)
    await conn.close()
