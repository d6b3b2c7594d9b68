"""Revision 0005 (event_entity, subscription.min_relevance): rows stored before it get entity rows
from their tickers so ticker filters keep finding them; event_entity has a day partition for every
day scored_event has (and upkeep makes both); entity rows go in with their events and a replay adds
none; downgrade removes it all and restores the partition function, upgrade again rebuilds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.pg import downgrade, libpq_dsn, migrate
from tests.api.conftest import NOW, event, new_database, seed, sql

pytestmark = pytest.mark.slow


def tables(dsn: str) -> set[str]:
    return {r[0] for r in sql(dsn, "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                                   "AND relkind IN ('r', 'p')")}


def test_upgrade_backfills_partitions_and_downgrade_removes(postgres):
    url = new_database(postgres)
    dsn = libpq_dsn(url)
    downgrade(url, "0004")
    assert "event_entity" not in tables(dsn)
    old = [event(i, source="m5", tickers=["OLDA", "OLDB"] if i % 2 else [], at=NOW - timedelta(minutes=i))
           for i in range(10)]
    cols = ("source, id, published_at, text, title, url, lang, tickers, ingested_at, scored_at, topic, "
            "topic_confidence, sentiment, p_negative, p_neutral, p_positive, score, model_version, truncated")
    for r in old:  # as a worker before 0005 wrote them
        sql(dsn, f"INSERT INTO scored_event ({cols}) VALUES ({', '.join(['%s'] * 19)})", *r)
    migrate(url)
    days = {r[0][len("scored_event_"):] for r in sql(dsn, "SELECT relname FROM pg_class WHERE relname ~ "
                                                         "'^scored_event_[0-9]{8}$'")}
    assert days and {r[0][len("event_entity_"):] for r in sql(
        dsn, "SELECT relname FROM pg_class WHERE relname ~ '^event_entity_[0-9]{8}$'")} == days
    backfilled = sql(dsn, "SELECT event_id, ticker, relevance, counted, directory_version FROM event_entity "
                          "ORDER BY 1, 2")
    assert backfilled == [(f"e{i}", t, 1.0, True, "backfill-0005") for i in range(1, 10, 2) for t in ("OLDA", "OLDB")]
    assert sql(dsn, "SELECT count(*) FROM event_entity_default") == [(0,)]  # each in its day's partition
    # new rows: entity rows with them, a replay adds nothing; a far day lands in the default partitions
    new = [event(100, source="m5", tickers=["NEWA"]), event(101, source="m5", tickers=["NEWA"],
                                                              at=NOW + timedelta(days=400))]
    assert len(seed(dsn, new)) == 2 and seed(dsn, new) == set()
    assert sql(dsn, "SELECT count(*) FROM event_entity WHERE ticker = 'NEWA'") == [(2,)]
    assert sql(dsn, "SELECT count(*) FROM event_entity_default") == [(1,)]
    far = (NOW + timedelta(days=400)).date()
    assert sql(dsn, "SELECT finsent_ensure_day_partition(%s)", far) == [(True,)]
    assert sql(dsn, "SELECT count(*) FROM event_entity_default") == [(0,)]
    assert sql(dsn, "SELECT finsent_ensure_day_partition(%s)", far) == [(False,)]
    assert sql(dsn, "SELECT min_relevance FROM subscription") == []
    downgrade(url, "0004")
    assert not {t for t in tables(dsn) if t.startswith("event_entity")}
    assert "min_relevance" not in {r[0] for r in sql(
        dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'subscription'")}
    assert sql(dsn, "SELECT finsent_ensure_day_partition(%s)", far + timedelta(days=1)) == [(True,)]  # 0002's again
    migrate(url)
    assert sql(dsn, "SELECT count(*) FROM event_entity WHERE directory_version = 'backfill-0005'") == [(12,)]
