"""A read replica (issue 22): a streaming standby started from pgserver's own binaries follows
the primary; with synchronous_standby_names set, the standby promoted after the primary is
killed -9 holds every write the worker's sink had confirmed, and the sink (multi-host DSN,
target_session_attrs=read-write) goes on writing to it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from core.pg import migrate
from finsent.services import Postgres, Standby, stop_postmaster
from models.runtime import Prediction
from stream.pipeline import row
from stream.records import NewsEvent
from stream.sink import PostgresSink

pytestmark = pytest.mark.slow
T0 = datetime(2026, 1, 5, 10, 0, 3, tzinfo=timezone.utc)


def rows(start: int, n: int):
    p = Prediction("Fed", 0.9, {}, "negative", {"negative": 0.9, "neutral": 0.05, "positive": 0.05}, -0.85, "v")
    return [row(NewsEvent(id=f"e{i}", source="wire", text=f"$ACME falls {i}", published_at=T0), p, T0, T0)
            for i in range(start, start + n)]


async def fetchval(dsn: str, sql: str):
    c = await asyncpg.connect(dsn, timeout=10)
    try:
        return await c.fetchval(sql)
    finally:
        await c.close()


@pytest.fixture
def primary_and_standby():
    base = Path(tempfile.mkdtemp(prefix="finsent-replica-"))
    base.chmod(0o755)
    primary = Postgres(base / "primary", database="rp").start()
    migrate(primary.url)
    standby = Standby(primary, base / "standby", synchronous=True).start()
    yield primary, standby
    standby.stop()
    stop_postmaster(primary.dir)  # it may have been killed already
    try:
        primary.stop()
    except Exception:  # noqa: BLE001 - pg_ctl finds no server after a kill -9
        pass
    shutil.rmtree(base, ignore_errors=True)


async def test_promoted_synchronous_standby_keeps_every_confirmed_write(primary_and_standby):
    primary, standby = primary_and_standby
    # the standby follows: read-only, and what the primary commits shows up
    assert await fetchval(standby.dsn, "SELECT pg_is_in_recovery()") is True
    assert await fetchval(primary.dsn, "SELECT sync_state FROM pg_stat_replication") == "sync"
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await fetchval(standby.dsn, "CREATE TABLE nope (x int)")

    dsn = f"postgresql://postgres@/rp?host={primary.server.pgdata},{standby.dir}&target_session_attrs=read-write"
    sink = PostgresSink(dsn, max_backoff_s=0.2)
    confirmed = 0
    try:
        for batch in range(10):
            await asyncio.wait_for(sink.store(rows(batch * 50, 50), lambda new: None), 30)
            confirmed += 50
        assert await fetchval(standby.dsn, "SELECT count(*) FROM scored_event") == confirmed
        lag = await fetchval(standby.dsn, Standby.lag_sql)
        assert lag is not None and float(lag) < 5

        # writes go on while the primary dies: kill -9, no shutdown, nothing flushed on purpose
        async def writer():
            nonlocal confirmed
            for batch in range(10, 200):
                await sink.store(rows(batch * 50, 50), lambda new: None)
                confirmed += 50

        # the standby stops receiving WAL (its WAL receiver frozen) while the writes go on: a
        # synchronous primary confirms nothing meanwhile; an asynchronous one would confirm
        # commits the standby never gets, and they would be lost at the promotion
        receiver = await fetchval(standby.dsn, "SELECT pid FROM pg_stat_wal_receiver")
        os.kill(receiver, signal.SIGSTOP)
        task = asyncio.ensure_future(writer())
        await asyncio.sleep(1.5)
        pid = int((Path(primary.server.pgdata) / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        at_kill = confirmed
        os.kill(receiver, signal.SIGCONT)
        await asyncio.sleep(1.0)
        standby.promote()
        await asyncio.wait_for(task, 240)  # the sink reconnects to the promoted standby and finishes
        assert at_kill >= 50 * 10 and confirmed == 200 * 50
        stored = await fetchval(standby.dsn, "SELECT count(*) FROM scored_event")
        assert stored == confirmed, f"{confirmed} confirmed writes, {stored} on the promoted standby"
        assert await fetchval(standby.dsn, "SELECT pg_is_in_recovery()") is False
    finally:
        await sink.close()


def test_worker_writing_through_a_failover_loses_nothing(kafka, tmp_path):
    """The worker (a real process, consuming Kafka) writes through a synchronous standby's
    promotion after the primary is killed -9: every message produced is stored once on the
    promoted server, and the worker never exits."""
    import threading
    import time
    from datetime import timedelta

    from finsent.services import wait_for
    from stream.simulate import feed
    from tests.integration.conftest import FAST_DETECTOR, Stack

    base = Path(tempfile.mkdtemp(prefix="finsent-replica-w-"))
    base.chmod(0o755)
    primary = Postgres(base / "primary", database="postgres").start()
    standby = None
    stack = Stack(kafka, primary, tmp_path, **FAST_DETECTOR)
    try:
        standby = Standby(primary, base / "standby", synchronous=True).start()
        # the worker (and the test's counts) reach whichever server takes writes
        stack.url = (f"postgresql+asyncpg://postgres@/{stack.db}?host={primary.server.pgdata},{standby.dir}"
                     "&target_session_attrs=read-write")
        w = stack.start_worker()
        t0 = datetime.now(timezone.utc) - timedelta(hours=1)
        evs = list(feed(3000, 21, None, start=t0, spacing_s=0.05, prefix="f"))
        feeder = threading.Thread(target=stack.produce, args=(evs, 100.0))  # 30 s of traffic
        feeder.start()
        wait_for(lambda: stack.rows() >= 600, 120, what="first rows")
        pid = int((Path(primary.server.pgdata) / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        time.sleep(2)
        standby.promote()
        feeder.join()
        stack.wait_rows(3000, timeout=240)
        time.sleep(2)
        (n, distinct), = stack.sql("SELECT count(*), count(DISTINCT (source, id)) FROM scored_event")
        assert n == distinct == 3000
        assert stack.sql("SELECT pg_is_in_recovery()")[0][0] is False  # the promoted standby answered
        assert w.alive(), w.log_tail()
    finally:
        stack.close()
        if standby is not None:
            standby.stop()
        stop_postmaster(primary.dir)
        try:
            primary.stop()
        except Exception:  # noqa: BLE001 - killed already
            pass
        shutil.rmtree(base, ignore_errors=True)
