"""The detect agent's object (stream.detection.Detection) against a real Postgres: the table is
a dict standing in for the Faust table (what its changelog restores), alerts are collected.

Issue 17 item 8: after a scored partition moves away and back, an open alert on a key that has
gone quiet resolves. Item 10: quiet keys expire from the table; an open alert still resolves
first."""

from __future__ import annotations

import asyncpg
import pytest

from core.pg import libpq_dsn
from stream.detection import Detection
from stream.detector import DetectorConfig, SpikeDetector
from stream.records import AlertRecord, Counts
from stream.sink import PostgresSink

EXPECTED = frozenset({"news/0", "news/1"})
T = 1_780_000_000.0  # event time of the surge
L = 30.0


def marks(t: float) -> dict:
    """Both input partitions active, newest event time `t`."""
    return {tp: [t - L, False] for tp in EXPECTED}


def surge(batch: int, t: float = T) -> Counts:
    ids = [f"s-{batch}-{i}" for i in range(5)]
    return Counts("ticker:ACME", [[int(t // 10), 30, 30, ids, None]], batch)


def background(batch: int, t: float) -> Counts:
    return Counts("ticker:BUSY", [[int(t // 10), 5, 1, [], None]], batch)


@pytest.fixture
async def sink(migrated_db):
    s = PostgresSink(libpq_dsn(migrated_db), max_backoff_s=0.2)
    yield s
    await s.close()


def worker(sink, table: dict, sent: list, **cfg) -> Detection:
    async def send_alert(key: str, record: AlertRecord) -> None:
        sent.append((key, AlertRecord.decode(record.encode()).event))  # as a consumer of finsent.alerts reads it

    return Detection(SpikeDetector(DetectorConfig(**cfg)), table, sink, send_alert, EXPECTED, 900.0)


async def alert_rows(dsn: str) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT key, resolved_at IS NOT NULL FROM alert ORDER BY key")]
    finally:
        await conn.close()


async def test_open_alert_on_a_quiet_key_resolves_after_its_partition_moved_away_and_back(sink):
    table, sent = {}, []  # one table: what the changelog gives whichever worker owns partition 0
    a = worker(sink, table, sent)
    await a.on_marks(0, marks(T - 300))  # A owns scored partition 0; ACME has no state yet
    await a.on_counts(0, background(1, T - 290))

    b = worker(sink, table, sent)  # partition 0 moves to B, where ACME surges and its alert opens
    b.reassigned({0})
    await b.on_marks(0, marks(T + 5))
    await b.on_counts(0, surge(2))
    assert sent == [("ticker:ACME", "opened")]

    a.reassigned({0})  # ... and back to A (the table restored); ACME goes quiet, BUSY goes on
    for i, t in enumerate(range(int(T) + 10, int(T) + 600, 10)):
        await a.on_counts(0, background(10 + i, t))
        await a.on_marks(0, marks(t))
    assert sent == [("ticker:ACME", "opened"), ("ticker:ACME", "resolved")]
    assert await alert_rows(sink.dsn) == [("ACME", True)]
    assert table["ticker:ACME"]["alert"] is None


async def test_quiet_keys_expire_from_the_table_after_their_open_alert_resolved(sink):
    table, sent = {}, []
    d = worker(sink, table, sent, key_ttl_s=3600.0)
    d.reassigned({0})
    await d.on_marks(0, marks(T + 5))
    await d.on_counts(0, surge(1))
    t = T
    for i in range(90):  # 90 minutes: only BUSY speaks
        t += 60
        await d.on_counts(0, background(10 + i, t))
        await d.on_marks(0, marks(t))
    assert sent == [("ticker:ACME", "opened"), ("ticker:ACME", "resolved")]
    assert "ticker:ACME" not in table and "ticker:BUSY" in table  # quiet 80+ min > 1 h: gone (a tombstone)
    assert "ticker:ACME" not in d.keys(0)
    await d.on_counts(0, surge(200, t + 5))  # it comes back as a new key (cold), and can alert again
    assert table["ticker:ACME"]["history"] == 0 and sent[-1] == ("ticker:ACME", "opened")


async def test_a_flood_of_distinct_tickers_is_held_to_the_key_cap_and_an_open_alert_stays(sink):
    """Each distinct ticker is a detector key (~3 KB) kept for the key TTL (a day): a feed flooded
    with spam cashtags grew the worker's memory without bound. Past max_keys the quiet keys seen
    longest ago go; a key with an open alert, and the keys still in their windows, stay."""
    from stream import metrics

    table, sent = {}, []
    d = worker(sink, table, sent, max_keys=100)
    d.reassigned({0})
    await d.on_marks(0, marks(T - 5))
    await d.on_counts(0, surge(1))  # ACME's alert opens
    before = metrics.KEYS_EVICTED._value.get()
    t = T
    for i in range(300):  # a new ticker every 2 s, one item each
        t += 2
        await d.on_counts(0, Counts(f"ticker:SPAM{i}", [[int(t // 10), 1, 0, [f"x/{i}"], None]], 100 + i))
        await d.on_counts(0, surge(1000 + i, t))  # ACME goes on surging: its alert stays open
        await d.on_marks(0, marks(t))
    assert sent[0] == ("ticker:ACME", "opened") and table["ticker:ACME"]["alert"] is not None
    assert len(table) <= 100 + 70  # the cap, and the keys still in their 2-minute windows
    assert "ticker:SPAM0" not in table and "ticker:SPAM299" in table  # the oldest went, the newest stay
    assert metrics.KEYS_EVICTED._value.get() - before >= 130
