"""Issue 17, items 7 and 9, against real PostgreSQL servers: every Postgres wait of the worker
has a bound and a failing kind of write stays visible while others succeed; a read-only server
(a failover) is left for the server that accepts writes."""

import asyncio
import os
import shutil
import signal
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from core.pg import libpq_dsn, migrate
from models.runtime import Prediction
from stream.detector import Decision
from stream.pipeline import row
from stream.records import NewsEvent
from stream.sink import DbTimeouts, PostgresSink

pytestmark = pytest.mark.slow
T0 = datetime(2026, 1, 5, 10, 0, 3, tzinfo=timezone.utc)


def rows(n, start=0):
    p = Prediction("Fed", 0.9, {}, "negative", {"negative": 0.9, "neutral": 0.05, "positive": 0.05}, -0.85, "v")
    return [row(NewsEvent(id=f"e{i}", source="wire", text=f"$ACME falls {i}", published_at=T0), p, T0, T0)
            for i in range(start, start + n)]


def decision():
    t = T0.timestamp()
    return Decision("open", "ticker:ACME", t - 60, t - 60, t, 20, 18, 0.1, 20.0, 2.0, 9.0, 1e-9, "high", 0, ("wire/e1",))


async def until(pred, timeout, what):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def count(dsn, table="scored_event"):
    c = await asyncpg.connect(dsn)
    try:
        return await c.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await c.close()


async def test_server_side_timeouts_are_set_on_every_connection(migrated_db):
    sink = PostgresSink(libpq_dsn(migrated_db))
    try:
        got = await sink.retrying("probe", lambda c: c.fetchrow(
            "SELECT current_setting('statement_timeout') s, current_setting('lock_timeout') l, "
            "current_setting('idle_in_transaction_session_timeout') i"))
        assert (got["s"], got["l"], got["i"]) == ("1min", "10s", "1min")
    finally:
        await sink.close()


async def test_lock_left_open_on_alert_is_reported_while_row_writes_succeed(migrated_db):
    dsn = libpq_dsn(migrated_db)
    sink = PostgresSink(dsn, max_backoff_s=0.5, timeouts=DbTimeouts(lock_s=1.0))
    holder = await asyncpg.connect(dsn)
    tr = holder.transaction()
    await tr.start()
    await holder.execute("LOCK TABLE alert")  # an operator's session left open
    task = asyncio.create_task(sink.write_decision(decision()))
    try:
        await until(lambda: "alert" in sink.errors, 15, "the alert write to report the lock")  # waited silently before
        assert "LockNotAvailable" in sink.last_error
        await sink.store(rows(3), lambda new: None)  # row writes go on and succeed ...
        assert "alert" in sink.errors and not sink.up  # ... without clearing the alert path's failure
        await tr.rollback()
        payload = await asyncio.wait_for(task, 15)
        assert payload.event == "opened" and sink.up and sink.last_error == ""
    finally:
        task.cancel()
        await holder.close()
        await sink.close()


async def test_a_hung_connection_is_given_up_within_the_command_timeout(migrated_db):
    dsn = libpq_dsn(migrated_db)
    sink = PostgresSink(dsn, max_backoff_s=0.2, timeouts=DbTimeouts(command_s=2.0))
    watcher = await asyncpg.connect(dsn)
    stopped = []
    try:
        await sink.store(rows(2), lambda new: None)
        pids = [r["pid"] for r in await watcher.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        assert pids
        for pid in pids:  # the server side of the pooled connection stops answering: a half-open link
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        await asyncio.wait_for(sink.store(rows(2, 2), lambda new: None), 20)  # hung for good before
        assert await count(dsn) == 4
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        await watcher.close()
        await sink.close()


@pytest.fixture(scope="module")
def two_servers():
    from finsent.services import Postgres

    base = Path(tempfile.mkdtemp(prefix="finsent-failover-"))
    base.chmod(0o755)
    servers = [Postgres(base / name, database="fo").start() for name in ("a", "b")]
    for s in servers:
        migrate(s.url)
    yield servers
    for s in servers:
        s.stop()
    shutil.rmtree(base, ignore_errors=True)


async def read_only_on(dsn, timeout=10.0):
    """Until a new session on the server starts read-only (pg_reload_conf only signals the reload)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        c = await asyncpg.connect(dsn, timeout=5)
        try:
            if await c.fetchval("SELECT current_setting('default_transaction_read_only')") == "on":
                return
        finally:
            await c.close()
        assert asyncio.get_running_loop().time() < deadline, "the server did not turn read-only"
        await asyncio.sleep(0.05)


async def test_failover_to_the_server_that_accepts_writes(two_servers):
    a, b = two_servers
    dsn = f"postgresql://postgres@/fo?host={a.server.pgdata},{b.server.pgdata}&target_session_attrs=read-write"
    sink = PostgresSink(dsn, max_backoff_s=0.2)
    try:
        await asyncio.wait_for(sink.store(rows(3), lambda new: b"counts"), 20)
        assert (await count(a.dsn), await count(b.dsn)) == (3, 0)
        # A is demoted: every transaction on it is read-only now (SQLSTATE 25006), B takes writes
        a.server.psql("ALTER SYSTEM SET default_transaction_read_only = on;")
        a.server.psql("SELECT pg_reload_conf();")
        await read_only_on(a.dsn)  # the reload reaches the server's sessions a moment later
        await asyncio.wait_for(sink.store(rows(4, 3), lambda new: b"counts"), 30)  # retried on A forever before
        assert (await count(a.dsn), await count(b.dsn)) == (3, 4)
        assert await count(b.dsn, "detector_outbox") == 1 and sink.up
    finally:
        a.server.psql("ALTER SYSTEM RESET default_transaction_read_only;")
        a.server.psql("SELECT pg_reload_conf();")
        await sink.close()


async def test_a_row_routed_to_the_default_partition_while_its_day_is_attached_is_stored(migrated_db):
    """Was: the insert, sent to the default partition and waiting for its lock while the day's
    partition was attached (the worker's partition upkeep, history upkeep), failed on the default
    partition's new constraint; the sink took that for bad data (Rejected: the batch split, a row
    could be dead-lettered). Now it is retried, and routes to the new partition."""
    dsn = libpq_dsn(migrated_db)
    at = datetime(2031, 3, 4, 12, 0, tzinfo=timezone.utc)  # a day without a partition
    p = Prediction("Fed", 0.9, {}, "negative", {"negative": 0.9, "neutral": 0.05, "positive": 0.05}, -0.85, "v")
    batch = [row(NewsEvent(id=f"race{i}", source="wire", text=f"$ACME falls {i}", published_at=at), p, at, at)
             for i in range(3)]
    blocker, maker = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    sink = PostgresSink(dsn, max_backoff_s=0.2)

    async def waiting(n):
        while await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted") < n:
            await asyncio.sleep(0.02)
    try:
        tr = blocker.transaction()
        await tr.start()
        await blocker.execute("LOCK TABLE scored_event_default IN ACCESS SHARE MODE")
        make = asyncio.create_task(maker.fetchval("SELECT finsent_ensure_day_partition($1)", at.date()))
        await asyncio.wait_for(waiting(1), 30)  # the attach waits for the default partition
        store = asyncio.create_task(sink.store(batch, lambda new, st=None: None))
        await asyncio.wait_for(waiting(2), 30)  # and the insert, routed there, behind it
        await tr.commit()
        assert await make
        new, _ = await asyncio.wait_for(store, 30)
        assert len(new) == 3
        assert await blocker.fetchval("SELECT count(*) FROM scored_event_20310304") == 3
        assert sink.up
    finally:
        await sink.close()
        await blocker.close()
        await maker.close()
