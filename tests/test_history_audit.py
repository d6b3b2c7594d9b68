"""History lifecycle run at bad moments and with bad inputs, on the real Postgres (core/history.py,
`finsent history`): late rows after a drop, a restore that fails half way, rows written or changed
while a day is being dropped, two archives of one day at once, a writer inserting into the day
while upkeep archives and drops it, broken manifests and files, bad settings. Each test failed on
the code before the fix it names."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from core import history
from core.history import HistoryError, Retention
from core.pg import libpq_dsn
from tests.test_history import TODAY, connect, fill_day, rows_of

ROOT = Path(__file__).resolve().parents[1]
LATE = """INSERT INTO scored_event (source, id, published_at, text, ingested_at, topic, topic_confidence,
    sentiment, p_negative, p_neutral, p_positive, score, model_version) VALUES
    ('late', $2, $1, 'late', $1, 'macro', 1, 'neutral', 0, 1, 0, 0, 'm')"""


def policy_for(root: Path, **kw) -> Retention:
    return Retention(raw_days=30, archive_dir=root, minute_days=0, five_minute_days=0, **kw)


def noon(day: date, **kw) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc) + timedelta(**kw)


async def until_quiet(conn, policy: Retention, steps: int = 10) -> list[str]:
    done = []
    for _ in range(steps):
        lines = await history.upkeep(conn, policy, TODAY)
        done += lines
        if not lines:
            return done
    raise AssertionError(f"upkeep never settled: {done}")


async def restored_counts(conn, root: Path, day: date) -> dict[str, int]:
    await history.restore_day(conn, root, day)
    return {t: len(await rows_of(conn, t, day)) for t in history.DAY_TABLES}


# --- the archive is never replaced by one that has less ----------------------------------------------

async def test_a_late_row_of_a_dropped_day_does_not_replace_its_archive(migrated_db, tmp_path):
    """Dropped day, then a late (or replayed) row of it: it lands in the default partition, upkeep
    makes the day's partition again and archives it. The old code wrote an archive of that one row
    over the day's archive (100 rows gone); now the archive's rows are put back first."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 100)
    policy = policy_for(tmp_path)
    await until_quiet(conn, policy)
    assert await rows_of(conn, "scored_event", day) == []
    await conn.execute(LATE, noon(day), "late-1")

    done = await until_quiet(conn, policy)
    assert any(" dropped:" in line for line in done)
    manifest = history.read_manifest(tmp_path, day)
    assert manifest["tables"]["scored_event"]["rows"] == 101 and manifest["tables"]["event_entity"]["rows"] == 50
    assert await restored_counts(conn, tmp_path, day) == {"scored_event": 101, "event_entity": 50}
    await conn.close()


async def test_a_failed_restore_changes_nothing_and_loses_nothing(migrated_db, tmp_path):
    """A restore whose second file is damaged: the old code had loaded the first table already (and
    made the partitions), and the next upkeep archived the half-restored day over the archive
    (event_entity: 50 rows -> 0). Now every file is checked first, the tables load in one
    transaction, and an archive is never replaced by one the database does not cover."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 100)
    policy = policy_for(tmp_path)
    await until_quiet(conn, policy)
    path = history.day_file(tmp_path, "event_entity", day)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(HistoryError, match="checksum"):
        await history.restore_day(conn, tmp_path, day)
    assert await rows_of(conn, "scored_event", day) == []
    assert (await conn.fetchval("SELECT state FROM history_day WHERE day = $1", day)) == "dropped"

    # what a restore killed half way leaves (empty partitions made), then the worker's upkeep
    path.write_bytes(good)
    await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
    await until_quiet(conn, policy)
    manifest = history.read_manifest(tmp_path, day)
    assert {t: e["rows"] for t, e in manifest["tables"].items()} == {"scored_event": 100, "event_entity": 50}
    assert await restored_counts(conn, tmp_path, day) == {"scored_event": 100, "event_entity": 50}

    # a damaged archive that the database does not cover is refused, not replaced
    await history.drop_day(conn, day, tmp_path)
    await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(HistoryError, match="aside"):
        await history.upkeep(conn, policy, TODAY)
    assert history.day_file(tmp_path, "event_entity", day).read_bytes() == good[: len(good) // 2]
    assert history.read_manifest(tmp_path, day)["tables"]["event_entity"]["rows"] == 50
    await conn.close()


async def test_a_disk_full_while_archiving_again_leaves_the_previous_archive_whole(migrated_db, tmp_path,
                                                                                   monkeypatch):
    """Archiving a day again (a late row), the disk fills while the second table is written: the
    old code had already renamed the first table's new file over the previous archive's, whose
    manifest then no longer matched its files (the archive read as damaged)."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 50)
    await history.archive_day(conn, tmp_path, day)
    await conn.execute(LATE, noon(day), "late-1")
    real, calls = history._write_chunk, []

    def fill_up(*args):
        calls.append(1)
        if len(calls) == 2:  # event_entity, after scored_event
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(history, "_write_chunk", fill_up)
    with pytest.raises(OSError):
        await history.archive_day(conn, tmp_path, day)
    monkeypatch.undo()
    manifest = history.read_manifest(tmp_path, day)
    for table, entry in manifest["tables"].items():
        assert history.sha256_of(tmp_path / entry["file"]) == entry["sha256"], table
    assert manifest["tables"]["scored_event"]["rows"] == 50
    await history.archive_day(conn, tmp_path, day)  # room again
    assert (await history.verify_day(conn, tmp_path, day)).rows["scored_event"] == 51
    await conn.close()


# --- nothing written or changed between the check and the drop is lost --------------------------------

async def test_a_row_stored_while_the_day_is_being_dropped_is_not_lost(migrated_db, tmp_path, monkeypatch):
    """The old drop verified, then detached in another step: a row stored in between (a second
    connection, here right after the file checksum) was dropped with the partition and is in no
    archive. Now the partitions are locked and checked again in the dropping transaction."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 30)
    await history.archive_day(conn, tmp_path, day)
    real, fired = history.sha256_of, []

    def checksum_then_a_writer(path):
        digest = real(path)
        if not fired:
            fired.append(path)
            with psycopg.connect(libpq_dsn(migrated_db), autocommit=True) as other:
                other.execute(LATE.replace("$1", "%(t)s").replace("$2", "%(id)s"), {"t": noon(day), "id": "race"})
        return digest

    monkeypatch.setattr(history, "sha256_of", checksum_then_a_writer)
    with pytest.raises(HistoryError, match="rows in the database"):
        await history.drop_day(conn, day, tmp_path)
    monkeypatch.undo()
    assert fired and len(await rows_of(conn, "scored_event", day)) == 31
    await until_quiet(conn, policy_for(tmp_path))
    assert (await restored_counts(conn, tmp_path, day))["scored_event"] == 31
    await conn.close()


async def test_a_row_changed_after_the_archive_is_not_dropped_with_its_old_copy(migrated_db, tmp_path):
    """The stories backfill fills story_id on stored rows. The old verify compared keys only, so a
    day archived before the backfill was dropped with the archive's copy: story_id lost."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 20)
    await history.archive_day(conn, tmp_path, day)
    await conn.execute("UPDATE scored_event SET story_id = 'wire/s-1', novel = true, copies = 2 WHERE id = $1",
                       f"{day}-3")
    with pytest.raises(HistoryError, match="row contents"):
        await history.drop_day(conn, day, tmp_path)
    done = await until_quiet(conn, policy_for(tmp_path))
    assert any(" archived:" in line for line in done) and any(" dropped:" in line for line in done)
    await history.restore_day(conn, tmp_path, day)
    assert await conn.fetchval("SELECT story_id FROM scored_event WHERE id = $1", f"{day}-3") == "wire/s-1"
    await conn.close()


async def test_a_restored_day_verifies_and_is_dropped_again_without_a_second_archive(migrated_db, tmp_path):
    """The row digests survive the round trip through Parquet (floats, arrays, JSON, times), so the
    content check does not make upkeep archive a restored day again."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 60)
    await history.archive_day(conn, tmp_path, day)
    await history.drop_day(conn, day, tmp_path)
    await history.restore_day(conn, tmp_path, day, restore_days=7)
    await history.verify_day(conn, tmp_path, day)
    await conn.execute("UPDATE history_day SET pinned_until = now() - interval '1 second' WHERE day = $1", day)
    done = await until_quiet(conn, policy_for(tmp_path))
    assert any(" dropped:" in line for line in done) and not any(" archived:" in line for line in done)
    await conn.close()


async def test_upkeep_while_a_writer_keeps_inserting_into_the_day(migrated_db, tmp_path):
    """A second connection stores rows of the day being archived and dropped, before, during and
    after the drop (late rows then land in the default partition). Every row it stored ends up in
    the archive, none twice."""
    conn = await connect(migrated_db)
    writer = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 200)
    policy = policy_for(tmp_path)
    stored, stop = [], asyncio.Event()

    async def write():
        i = 0
        while not stop.is_set():
            await writer.execute(LATE, noon(day, seconds=i), f"w-{i}")
            stored.append(i)
            i += 1
            await asyncio.sleep(0.002 if i % 20 else 0.2)  # bursts, and pauses in which a drop can get through

    task = asyncio.create_task(write())
    drops, deadline = 0, asyncio.get_running_loop().time() + 20
    while (drops < 3 or len(stored) < 60) and asyncio.get_running_loop().time() < deadline:
        try:
            drops += sum(" dropped:" in line for line in await history.upkeep(conn, policy, TODAY))
        except HistoryError as exc:  # rows arrived between archive and drop: archived again at the next step
            assert "rows in the database" in str(exc) or "busy" in str(exc), exc
        await asyncio.sleep(0.01)
    stop.set()
    await task
    await until_quiet(conn, policy)
    assert drops >= 1 and len(stored) >= 20
    assert await rows_of(conn, "scored_event", day) == []
    counts = await restored_counts(conn, tmp_path, day)
    assert counts == {"scored_event": 200 + len(stored), "event_entity": 100}
    await writer.close()
    await conn.close()


async def test_a_late_row_stored_while_upkeep_attaches_its_day_is_not_refused(migrated_db, tmp_path):
    """Upkeep gives late rows of an old day their partition (attached beside the default one). An
    insert of a row of that day that had been routed to the default partition and waited for its
    lock failed with 'violates partition constraint', which the worker takes for bad data (the row
    is dead-lettered). Now the parents are locked first, and the insert routes after the attach."""
    conn, blocker, writer = await connect(migrated_db), await connect(migrated_db), await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await conn.execute(LATE, noon(day), "late-1")  # no partition: in the default one
    tr = blocker.transaction()
    await tr.start()
    await blocker.execute("LOCK TABLE scored_event_default IN ACCESS SHARE MODE")

    async def waiting(n: int) -> None:
        while await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted") < n:
            await asyncio.sleep(0.02)

    upkeep = asyncio.create_task(history.upkeep(conn, policy_for(tmp_path), TODAY))
    await asyncio.wait_for(waiting(1), 30)  # upkeep waits for the default partition
    insert = asyncio.create_task(writer.execute(LATE, noon(day, minutes=1), "late-2"))
    await asyncio.wait_for(waiting(2), 30)  # and the insert waits behind it
    await tr.commit()
    await insert  # raised CheckViolationError
    await upkeep
    await until_quiet(conn, policy_for(tmp_path))
    assert (await restored_counts(conn, tmp_path, day))["scored_event"] == 2
    for c in (conn, blocker, writer):
        await c.close()



async def test_a_row_stored_between_the_archive_and_the_drop_is_archived_again_not_an_error(migrated_db, tmp_path,
                                                                                              monkeypatch):
    """A late row of the day that comes in after upkeep archived the day and before it drops it:
    the drop refuses (the database holds more than the archive). Upkeep used to stop there with an
    error (history upkeep failed: /health 503 until the next run); now it archives the day again,
    the new row with it, and drops it."""
    conn, writer = await connect(migrated_db), await connect(migrated_db)
    day = TODAY - timedelta(days=41)
    await conn.execute(LATE, noon(day), "first")
    real, calls = history.archive_day, []

    async def archive_then_a_late_row(*a, **kw):
        report = await real(*a, **kw)
        calls.append(report)
        if len(calls) == 1:
            await writer.execute(LATE, noon(day, minutes=5), "between")
        return report

    monkeypatch.setattr(history, "archive_day", archive_then_a_late_row)
    done = await until_quiet(conn, policy_for(tmp_path))
    assert len(calls) == 2 and any(" dropped:" in line for line in done), done
    monkeypatch.setattr(history, "archive_day", real)
    assert (await restored_counts(conn, tmp_path, day))["scored_event"] == 2
    await conn.close()
    await writer.close()

def elsewhere(migrated_db, work) -> list:
    """Run `work(conn)` on its own connection and event loop in a thread, wait for it: what another
    process (the worker, a second `finsent history`) does while this one is paused."""
    out: list = []

    def run():
        async def go():
            other = await connect(migrated_db)
            try:
                return await work(other)
            finally:
                await other.close()
        try:
            out.append(asyncio.run(go()))
        except Exception as exc:  # noqa: BLE001 - looked at by the caller
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    return out


# --- one at a time ----------------------------------------------------------------------------------------

async def test_two_archives_of_one_day_at_once(migrated_db, tmp_path, monkeypatch):
    """The worker's upkeep and `finsent history archive` on the same day wrote the same temporary
    file at once (the second truncating it under the first). Now the second is refused."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 500)
    monkeypatch.setattr(history, "CHUNK_ROWS", 100)
    second: list = []

    def progress(table, n):
        if not second:  # half way through the first archive's first file
            second.extend(elsewhere(migrated_db, lambda c: history.archive_day(c, tmp_path, day)))

    await history.archive_day(conn, tmp_path, day, progress)
    assert len(second) == 1 and isinstance(second[0], HistoryError) and "running" in str(second[0])
    assert (await history.verify_day(conn, tmp_path, day)).rows == {"scored_event": 500, "event_entity": 250}
    await conn.close()


async def test_upkeep_leaves_a_day_that_is_being_restored(migrated_db, tmp_path, monkeypatch):
    """The worker's upkeep ran while `finsent history restore` was loading a day (its partitions
    made, its rows not committed yet): it archived the empty-looking day over the archive, and the
    restore then found the next file changed (event_entity lost for good). Now it skips the day."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 400)
    policy = policy_for(tmp_path)
    await until_quiet(conn, policy)
    monkeypatch.setattr(history, "CHUNK_ROWS", 100)
    during: list = []

    def progress(table, n):
        if not during:
            during.extend(elsewhere(migrated_db, lambda c: history.upkeep(c, policy, TODAY)))

    report = await history.restore_day(conn, tmp_path, day, progress)
    assert not isinstance(during[0], Exception), during
    assert any("skipped" in line for line in during[0]) and not any("archived" in line for line in during[0])
    assert report.rows == {"scored_event": 400, "event_entity": 200}
    manifest = history.read_manifest(tmp_path, day)
    assert {t: e["rows"] for t, e in manifest["tables"].items()} == {"scored_event": 400, "event_entity": 200}
    await conn.close()


# --- odd days and settings ---------------------------------------------------------------------------------

async def test_drop_refuses_a_day_that_is_not_over(migrated_db, tmp_path):
    """`finsent history drop` of today archived and dropped a partition the worker still writes to:
    later rows went to the default partition and the API answered 410 for today."""
    conn = await connect(migrated_db)
    day = history.utc_today()
    await fill_day(conn, day, 10)
    await history.archive_day(conn, tmp_path, day)
    with pytest.raises(HistoryError, match="not over"):
        await history.drop_day(conn, day, tmp_path)
    with pytest.raises(HistoryError, match="not over"):
        await history.drop_day(conn, day, None, require_archive=False)
    assert len(await rows_of(conn, "scored_event", day)) == 10
    assert await conn.fetchval("SELECT count(*) FROM history_day WHERE state = 'dropped'") == 0
    await conn.close()


async def test_restore_days_zero_keeps_the_restored_day(migrated_db, tmp_path):
    """Retention settings say 0 = forever; FINSENT_RETENTION_RESTORE_DAYS=0 pinned the restored day
    until now(), and the next upkeep dropped it again."""
    conn = await connect(migrated_db)
    day = TODAY - timedelta(days=40)
    await fill_day(conn, day, 10)
    policy = policy_for(tmp_path)
    await until_quiet(conn, policy)
    await history.restore_day(conn, tmp_path, day, restore_days=0)
    assert await until_quiet(conn, policy) == []
    assert len(await rows_of(conn, "scored_event", day)) == 10
    assert [r["state"] for r in await history.status(conn, policy, TODAY) if r["day"] == day] == ["restored"]
    await conn.close()


async def test_times_far_from_1970_fingerprint_the_same_in_python_and_sql(migrated_db, tmp_path):
    """The key fingerprint took microseconds from a float (datetime.timestamp()): past ~2242 it is
    a microsecond off SQL's exact figure and the day never verified."""
    conn = await connect(migrated_db)
    for day in (date(2300, 6, 1), date(1900, 1, 1)):
        await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
        for i in range(40):
            await conn.execute(LATE, noon(day, seconds=i * 997, microseconds=(i * 7919) % 1_000_000 + 1), f"far-{i}")
        await history.archive_day(conn, tmp_path, day)
        assert (await history.verify_day(conn, tmp_path, day)).rows["scored_event"] == 40
    await conn.close()


# --- the CLI: a message and an exit code, never a traceback ---------------------------------------------------

def finsent(url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "DATABASE_URL": url, "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, "-m", "finsent.cli", "history", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_inputs_give_a_message_and_an_exit_code(migrated_db, tmp_path):
    day, tomorrow = TODAY - timedelta(days=40), history.utc_today() + timedelta(days=1)

    async def setup():
        conn = await connect(migrated_db)
        await fill_day(conn, day, 10)
        await history.archive_day(conn, tmp_path, day)
        await history.drop_day(conn, day, tmp_path)
        await conn.fetchval("SELECT finsent_ensure_day_partition($1)", tomorrow)
        await conn.close()
    asyncio.run(setup())
    arch = ("--archive-dir", str(tmp_path))

    # a file of the archive gone: was "the database could not be reached ... FileNotFoundError"
    history.day_file(tmp_path, "event_entity", day).rename(tmp_path / "aside.parquet")
    r = finsent(migrated_db, "restore", str(day), *arch)
    assert r.returncode == 1 and "missing" in r.stderr and "database" not in r.stderr, r.stderr
    # a truncated manifest: was a JSONDecodeError traceback
    manifest = history.manifest_file(tmp_path, day)
    manifest.write_text(manifest.read_text()[:40])
    for cmd in ("verify", "restore", "drop"):
        r = finsent(migrated_db, cmd, str(day), *arch)
        assert r.returncode == 1 and "cannot be read" in r.stderr and "Traceback" not in r.stderr, (cmd, r.stderr)
    r = finsent(migrated_db, "status", *arch)
    assert r.returncode == 0 and "unreadable" in r.stdout, r.stdout + r.stderr
    # a bad setting: was a pydantic traceback
    r = finsent(migrated_db, "upkeep", *arch, FINSENT_RETENTION_RAW_DAYS="-1")
    assert r.returncode == 2 and "FINSENT_RETENTION_RAW_DAYS" in r.stderr and "Traceback" not in r.stderr, r.stderr
    # an archive directory that cannot be written: said so, not "the database could not be reached"
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    r = finsent(migrated_db, "archive", str(tomorrow), "--archive-dir", str(blocker))
    assert r.returncode == 1 and "archive I/O failed" in r.stderr and "Traceback" not in r.stderr, r.stderr
    # a day in a bad format
    r = finsent(migrated_db, "drop", "2026-02-30", *arch)
    assert r.returncode == 2 and "not a day" in r.stderr
