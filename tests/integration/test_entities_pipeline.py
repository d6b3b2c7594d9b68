"""Entities through the real worker (Kafka → worker → Postgres), issue 19: a wire that names
Boeing in its headlines without a cashtag or a `tickers` field reaches BA's rows, its per-minute
series and a BA alert whose evidence a subscriber asking for relevance >= 0.7 is paged with; a
headline naming two companies stores both."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from api.queries import ALERT_RELEVANT
from finsent.services import wait_for
from stream.simulate import feed, surge_headline

pytestmark = pytest.mark.slow
T0 = datetime.now(timezone.utc) - timedelta(hours=1)
TWO = "Apple beats on iPhone sales while Samsung slides on weak chip demand"


def test_untagged_wire_headlines_reach_ba_rows_series_and_alert(stack):
    evs = list(feed(3000, 7, start=T0, spacing_s=0.1, prefix="w"))
    planted = set()
    for j, i in enumerate(range(2000, 2030)):  # 3 s of a wire that tags nothing: 30 different bad stories
        evs[i] = {"id": f"crash-{j}", "source": "wire-x", "published_at": evs[i]["published_at"],
                  "text": surge_headline(j, "BA", 4 + j % 9)}  # (copies of a few would count as a few stories)
        planted.add(evs[i]["id"])
    evs[100] = {"id": "two-1", "source": "wire-x", "published_at": evs[100]["published_at"], "text": TWO}
    stack.start_worker()
    stack.produce(evs)
    stack.wait_rows(3000)
    wait_for(lambda: stack.sql("SELECT count(*) FROM alert WHERE key_type = 'ticker' AND key = 'BA'")[0][0] >= 1,
             60, what="a BA alert")
    time.sleep(2)
    rows = dict(stack.sql("SELECT id, tickers FROM scored_event WHERE source = 'wire-x'"))
    assert all(rows[i] == ["BA"] for i in planted), rows
    ents = stack.sql("SELECT event_id, ticker, name, relevance, counted, sentiment FROM event_entity "
                     "WHERE source = 'wire-x' ORDER BY 1, 2")
    crash = [e for e in ents if e[0] in planted]
    assert len(crash) == 30 and all(e[1:5] == ("BA", "Boeing", 0.75, True) for e in crash)
    assert sum(e[5] == "negative" for e in crash) >= 25
    assert [e[1] for e in ents if e[0] == "two-1"] == ["AAPL", "SSNLF"]
    # BA's series: the per-minute rollup counts the planted rows with everything else about BA
    (n_rollup,), = stack.sql("SELECT sum(n) FROM event_rollup_minute WHERE key_type = 'ticker' AND key = 'BA'")
    (n_rows,), = stack.sql("SELECT count(*) FROM scored_event WHERE 'BA' = ANY(tickers)")
    assert n_rollup == n_rows >= 30
    # the alert's evidence is the planted headlines, and it pages a subscriber at relevance 0.7, not at 0.9
    (alert_id, samples), = stack.sql("SELECT id, sample_event_ids FROM alert WHERE key_type = 'ticker' "
                                     "AND key = 'BA' ORDER BY id LIMIT 1")
    assert sum(s.split("/", 1)[1] in planted for s in samples) >= 3

    async def relevant(cut: float) -> bool:
        conn = await asyncpg.connect(stack.dsn)
        try:
            return await conn.fetchval(ALERT_RELEVANT, alert_id, "BA", cut)
        finally:
            await conn.close()
    assert asyncio.run(relevant(0.7)) is True and asyncio.run(relevant(0.9)) is False
