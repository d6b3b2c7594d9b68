"""`finsent stories backfill` on the real Postgres: rows stored without stories get them, in
event-time order, resumably (a stopped run goes on from its stored cursor, counting nothing twice)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from typer.testing import CliRunner

from core.events import store_scored
from core.pg import libpq_dsn
from tests.test_stories import OTHER, STORY, row

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)


@pytest.fixture(scope="module")
def url(postgres):
    from tests.conftest import new_database

    return new_database(postgres, "sb")


def run(url: str, *args: str):
    from core.settings import get_settings
    from finsent.cli import app

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["stories", "backfill", *args], env={"DATABASE_URL": url})
    finally:
        get_settings.cache_clear()


async def query(url: str, sql: str, *args):
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def seed(url: str, rows: list[tuple]) -> None:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        async with conn.transaction():
            await store_scored(conn, rows)
    finally:
        await conn.close()


def test_backfill_assigns_stories_and_resumes(url):
    # 25 rows: a story with 9 copies spread over the set, and 16 different items
    rows = [row(100 + i, ("RT @a%d: " % i) + STORY if i % 3 == 0 else f"{OTHER} number {i} in a series of reports "
                f"about topic {i * 7919 % 1000}", T0 + timedelta(minutes=i), source=f"src{i % 4}",
                tickers=("ACME",) if i % 3 == 0 else ("GLBX",)) for i in range(25)]
    asyncio.run(seed(url, rows))
    assert asyncio.run(query(url, "SELECT count(*) FROM scored_event WHERE story_id IS NULL"))[0][0] == 25

    first = run(url, "--batch", "4", "--limit", "8")  # stopped after two batches
    assert first.exit_code == 0, first.output
    assert "25 rows without a story" in first.output and "8 rows assigned; 17 left" in first.output
    second = run(url, "--batch", "4")
    assert second.exit_code == 0, second.output
    assert "resuming after" in second.output and "17 rows assigned; 0 left" in second.output

    got = {r["id"]: (r["story_id"], r["novel"], r["copies"]) for r in asyncio.run(query(
        url, "SELECT id, story_id, novel, copies FROM scored_event"))}
    copies = sorted((got[f"s{100 + i}"] for i in range(0, 25, 3)), key=lambda g: g[2])
    assert [c[2] for c in copies] == list(range(1, 10)) and {c[0] for c in copies} == {"src0/s100"}
    assert [c[1] for c in copies] == [True] + [False] * 8
    story = asyncio.run(query(url, "SELECT copies, sources FROM story WHERE story_id = 'src0/s100'"))[0]
    assert story["copies"] == 9 and sorted(story["sources"]) == ["src0", "src1", "src2", "src3"]
    assert asyncio.run(query(url, "SELECT rows FROM story_cursor"))[0][0] == 25

    again = run(url)  # nothing left: nothing counted twice
    assert "0 rows assigned; 0 left" in again.output
    assert asyncio.run(query(url, "SELECT copies FROM story WHERE story_id = 'src0/s100'"))[0][0] == 9


def test_backfill_says_why_when_the_database_is_unreachable():
    out = run("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert out.exit_code == 2 and "database unreachable" in out.output
