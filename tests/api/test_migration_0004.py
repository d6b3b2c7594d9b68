"""Revision 0004 (5-minute and hourly rollups): the worker's write path keeps them equal to a
GROUP BY of the stored rows, a replayed batch adds nothing, and downgrading then upgrading
rebuilds them from the minute rollups to the same values."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from core.pg import downgrade, libpq_dsn, migrate
from tests.api.conftest import NOW, event, new_database, seed, sql

pytestmark = pytest.mark.slow
BUCKETS = {"event_rollup_5m": "date_bin('5 minutes', published_at, TIMESTAMPTZ '1970-01-01 00:00:00+00')",
           "event_rollup_hour": "date_trunc('hour', published_at, 'UTC')"}


def expected(dsn: str, bucket: str) -> list:
    return sql(dsn, f"""SELECT k, {bucket} AS b, count(*), count(*) FILTER (WHERE sentiment = 'negative'),
        count(*) FILTER (WHERE sentiment = 'positive'), round(sum(score)::numeric, 6)
        FROM scored_event, unnest(tickers) k GROUP BY 1, 2 ORDER BY 1, 2""")


def stored(dsn: str, table: str) -> list:
    return sql(dsn, f"""SELECT key, bucket, n, negatives, positives, round(score_sum::numeric, 6) FROM {table}
        WHERE key_type = 'ticker' ORDER BY 1, 2""")


def test_coarse_rollups_kept_replay_safe_and_rebuilt(postgres):
    url = new_database(postgres)
    dsn = libpq_dsn(url)
    rng = random.Random(3)
    rows = [event(i, tickers=rng.sample(["RA", "RB", "RC"], rng.randint(1, 2)), score=round(rng.uniform(-1, 1), 3),
                  sentiment=rng.choice(["negative", "neutral", "positive"]),
                  at=NOW - timedelta(minutes=rng.randrange(0, 300), seconds=rng.randrange(60))) for i in range(600)]
    seed(dsn, rows[:400])
    assert len(seed(dsn, rows[200:])) == 200  # a replay: 200 seen before
    for table, bucket in BUCKETS.items():
        assert stored(dsn, table) == expected(dsn, bucket) and len(stored(dsn, table)) > 3
    downgrade(url, "0003")
    assert not {"event_rollup_5m", "event_rollup_hour"} & {r[0] for r in sql(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    migrate(url)
    for table, bucket in BUCKETS.items():
        assert stored(dsn, table) == expected(dsn, bucket)
