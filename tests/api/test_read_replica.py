"""The API on a read replica (issue 22): a streaming standby (finsent.services.Standby, pgserver's
own binaries) of a primary of its own. Reads go to FINSENT_API_READ_URL and see what the primary
committed once replayed; API keys are looked up on the primary (a key made a moment ago works at
once); writes go to the primary; /ready checks both; /metrics carries the replica's lag. With
the standby stopped: /ready 503, reads a clear 503, writes unaffected."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from core.pg import libpq_dsn, migrate
from finsent.services import Postgres, Standby, stop_postmaster
from tests.api.conftest import NOW, ApiServer, api_settings, event, make_key, seed, sql, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replica_pair():
    base = Path(tempfile.mkdtemp(prefix="finsent-api-replica-"))
    base.chmod(0o755)
    primary = Postgres(base / "primary", database="rd").start()
    migrate(primary.url)
    standby = Standby(primary, base / "standby").start()
    yield primary, standby
    stop_postmaster(standby.dir)
    primary.stop()
    shutil.rmtree(base, ignore_errors=True)


def applications(dsn: str) -> set[str]:
    return {r[0] for r in sql(dsn, "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()")}


def test_reads_on_the_replica_writes_on_the_primary(replica_pair):
    primary, standby = replica_pair
    pdsn, sdsn = libpq_dsn(primary.url), standby.dsn
    settings = api_settings(primary.url, api_read_url=standby.url)
    with ApiServer(settings) as server, server.client() as c:
        r = c.get("/ready")
        assert r.status_code == 200 and r.json()["replica"] == "ok", r.text
        seed(pdsn, [event(9000 + i, tickers=("REPL",), at=NOW - timedelta(minutes=i + 1)) for i in range(4)])
        # the primary committed them; the replica shows them once replayed (async standby: a lag)
        wait_until(lambda: len(c.get("/v1/events", params={"ticker": "REPL"}).json()["items"]) == 4, 20,
                   "events replayed on the standby")
        assert "finsent-api" in applications(sdsn)  # the read really went to the standby
        series = c.get("/v1/series", params={"key": "REPL", "bucket": "1h"}).json()
        assert sum(series["series"][0]["n"]) == 4
        # a key created a moment ago works at once (looked up on the primary), and writes go there
        key = make_key(pdsn, "subscribe", name="fresh")
        with server.client(key) as kc:
            sub = kc.post("/v1/subscriptions", json={"name": "desk", "delivery": "stream"})
            assert sub.status_code == 201, sub.text
        assert sql(pdsn, "SELECT count(*) FROM subscription")[0][0] == 1
        wait_until(lambda: 'finsent_api_replica_lag_seconds{replica="read"}' in c.get("/metrics").text, 15,
                   "a lag sample in /metrics")
        lag = [ln for ln in c.get("/metrics").text.splitlines()
               if ln.startswith('finsent_api_replica_lag_seconds{replica="read"}')][0]
        assert 0 <= float(lag.split()[-1]) < 30

        standby.stop()  # the replica goes away: reads 503 with a reason, writes go on
        r = c.get("/ready")
        assert r.status_code == 503 and "read replica" in r.json()["detail"]
        r = c.get("/v1/events", params={"ticker": "REPL"})
        assert r.status_code == 503 and "read replica" in r.json()["detail"]
        r = c.get("/v1/series", params={"key": "REPL", "bucket": "1h", "end": NOW.isoformat()})
        assert r.status_code == 503 and "read replica" in r.json()["detail"]
        with server.client(key) as kc:
            assert kc.post("/v1/subscriptions", json={"name": "desk2", "delivery": "stream"}).status_code == 201
        wait_until(lambda: 'finsent_api_replica_up{replica="read"} 0.0' in c.get("/metrics").text, 15,
                   "the replica marked down in /metrics")
        assert 'finsent_api_replica_lag_seconds{replica="read"}' not in c.get("/metrics").text
