"""Partition upkeep across day boundaries and the detect step's write order, against a real
PostgreSQL (no Kafka: the Detection object is driven directly)."""

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from core.pg import ensure_partitions, libpq_dsn
from stream.detection import Detection
from stream.detector import DetectorConfig, SpikeDetector
from stream.records import Counts
from stream.sink import PostgresSink

pytestmark = pytest.mark.slow
INSERT = """INSERT INTO scored_event (source, id, published_at, text, ingested_at, topic, topic_confidence,
    sentiment, p_negative, p_neutral, p_positive, score, model_version) VALUES
    ('s', $1, $2, 't', now(), 'macro', 1, 'neutral', 0, 1, 0, 0, 'v')"""


async def test_restarts_across_day_boundaries_keep_partitions_and_move_default_rows(migrated_db):
    conn = await asyncpg.connect(libpq_dsn(migrated_db))
    try:
        far = datetime.now(timezone.utc).date() + timedelta(days=20)  # beyond the week ahead
        ts = datetime(far.year, far.month, far.day, 23, 30, tzinfo=timezone.utc)
        await conn.execute(INSERT, "late-night", ts)  # no partition yet: lands in the default one
        assert await conn.fetchval("SELECT count(*) FROM scored_event_default") == 1
        for restart in range(3):  # a worker restarted on each of the next days runs upkeep at start
            created = await ensure_partitions(conn, days_ahead=7, today=far - timedelta(days=1 - restart))
            assert created or restart > 0
        assert await conn.fetchval("SELECT count(*) FROM scored_event_default") == 0
        name = await conn.fetchval("SELECT tableoid::regclass::text FROM scored_event WHERE id = 'late-night'")
        assert name == f"scored_event_{far:%Y%m%d}"  # the UTC day, not the host's local day
        await conn.execute(INSERT, "after", ts + timedelta(minutes=10))
        assert await conn.fetchval("SELECT count(*) FROM scored_event_default") == 0
    finally:
        await conn.close()


class CrashOnce(PostgresSink):
    """Writes the alert, then 'dies' before the detector's state is stored."""

    crashed = False

    async def write_decision(self, d):
        payload = await super().write_decision(d)
        if not CrashOnce.crashed:
            CrashOnce.crashed = True
            raise SystemExit("killed between the alert write and the state write")
        return payload


async def test_kill_between_alert_write_and_state_write_gives_one_alert(migrated_db):
    sink, sent, table = CrashOnce(libpq_dsn(migrated_db)), [], {}

    async def send(key, payload):
        sent.append(payload)

    det = Detection(SpikeDetector(DetectorConfig()), table, sink, send, frozenset({"in/0"}), 900.0)
    await det.on_marks(0, {"in/0": [1000.0, False]})
    counts = Counts("ticker:NEWCO", [[101, 40, 40, [f"s/{i}" for i in range(5)], {}]], 1)
    with pytest.raises(SystemExit):
        await det.on_counts(0, counts)
    assert table.get("ticker:NEWCO") is None  # the state was never stored
    await det.on_counts(0, counts)  # the replay after restart: same input, same state
    await det.on_counts(0, counts)  # and a redelivery of the same batch on top
    conn = await asyncpg.connect(libpq_dsn(migrated_db))
    try:
        assert await conn.fetchval("SELECT count(*) FROM alert") == 1
        assert await conn.fetchval("SELECT count(*) FROM alert_event") == 1
    finally:
        await conn.close()
        await sink.close()
    assert table["ticker:NEWCO"]["open"]["101"][:2] == [40, 40]  # counted once
    assert [p.event for p in sent] == ["opened"]
