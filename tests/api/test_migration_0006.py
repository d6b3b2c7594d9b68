"""Revision 0006 (rollup change notifications for the series cache): a batch through the worker's
write path NOTIFYs `finsent_rollup` once per rollup table at commit with the oldest bucket it
changed, a replayed batch notifies nothing, a rolled-back one nothing, a TRUNCATE says 0; the
downgrade removes the triggers, the upgrade brings them back."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from core.pg import downgrade, libpq_dsn, migrate
from tests.api.conftest import NOW, event, new_database, seed

pytestmark = pytest.mark.slow
HOUR = NOW.replace(minute=0)


def notices(listener: psycopg.Connection) -> list[int]:
    return sorted(int(n.payload) for n in listener.notifies(timeout=0.5, stop_after=None))


def test_rollup_changes_notify_at_commit_and_downgrade_removes(postgres):
    url = new_database(postgres)
    dsn = libpq_dsn(url)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN finsent_rollup")
        rows = [event(i, source="m6", tickers=("MSIX",), at=HOUR - timedelta(hours=2, minutes=i)) for i in range(3)]
        seed(dsn, rows)
        oldest = rows[-1][2]
        minute = int(oldest.replace(second=0, microsecond=0).timestamp())
        five = minute - minute % 300
        hour = minute - minute % 3600
        assert notices(listener) == sorted([minute, five, hour])  # one per table, each its oldest bucket
        seed(dsn, rows)  # a replay changes no rollup row
        assert notices(listener) == []
        with psycopg.connect(dsn) as c:  # rolled back: nothing to tell
            c.execute("UPDATE event_rollup_minute SET n = n + 1")
            c.rollback()
        assert notices(listener) == []
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("TRUNCATE event_rollup_hour")
        assert notices(listener) == [0]

        downgrade(url, "0005")
        seed(dsn, [event(10, source="m6", tickers=("MSIX",), at=HOUR - timedelta(hours=1))])
        assert notices(listener) == []
        migrate(url)
        seed(dsn, [event(11, source="m6", tickers=("MSIX",), at=HOUR - timedelta(minutes=53))])
        assert len(notices(listener)) == 3  # minute, 5 minutes, hour (equal payloads would fold into one)
