"""`finsent history` end to end on the real Postgres: archive, verify, drop, restore a day; bad
input is a clear error with a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
from typer.testing import CliRunner

from core.pg import libpq_dsn
from core.settings import get_settings
from finsent.cli import app
from tests.test_history import TODAY, fill_day, rows_of


def run(*args: str):
    get_settings.cache_clear()  # the command reads the environment each test sets
    try:
        return CliRunner().invoke(app, ["history", *args])
    finally:
        get_settings.cache_clear()


def test_archive_verify_drop_restore_from_the_command_line(migrated_db, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", migrated_db)
    monkeypatch.setenv("FINSENT_ARCHIVE_DIR", str(tmp_path))
    day = TODAY - timedelta(days=50)

    async def setup_and_count(fill: bool) -> int:
        conn = await asyncpg.connect(libpq_dsn(migrated_db))
        try:
            if fill:
                await fill_day(conn, day, 40)
            return len(await rows_of(conn, "scored_event", day))
        finally:
            await conn.close()

    assert asyncio.run(setup_and_count(True)) == 40
    r = run("archive", day.isoformat())
    assert r.exit_code == 0, r.output
    assert "scored_event 40" in r.output
    assert run("verify", day.isoformat()).exit_code == 0
    r = run("drop", day.isoformat())
    assert r.exit_code == 0 and "dropped" in r.output, r.output
    assert asyncio.run(setup_and_count(False)) == 0
    r = run("status")
    assert r.exit_code == 0 and day.isoformat() in r.output, r.output
    r = run("restore", day.isoformat())
    assert r.exit_code == 0 and "restored" in r.output, r.output
    assert asyncio.run(setup_and_count(False)) == 40


def test_bad_input_is_a_clear_error(migrated_db, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", migrated_db)
    monkeypatch.delenv("FINSENT_ARCHIVE_DIR", raising=False)
    r = run("verify", "2026-13-45", "--archive-dir", str(tmp_path))
    assert r.exit_code == 2 and "is not a day" in r.output
    r = run("archive", "2026-01-01")
    assert r.exit_code == 2 and "FINSENT_ARCHIVE_DIR" in r.output, r.output
    r = run("restore", "2026-01-01", "--archive-dir", str(tmp_path))
    assert r.exit_code == 1 and "no archive" in r.output and "Traceback" not in r.output
