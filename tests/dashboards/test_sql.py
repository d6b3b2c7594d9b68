"""Every SQL query of the dashboards, expanded as Grafana's Postgres datasource expands it, runs
on a database seeded through the worker's write path and returns the expected columns and rows.

    .venv/bin/python -m pytest tests/dashboards/test_sql.py -q
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from core.pg import libpq_dsn
from dashboards.macros import TimeRange, expand
from tests.dashboards.conftest import Query, sql_queries, variable_values
from tests.dashboards.seed import fresh_db, seed_small, utc_now

T, TS = ["time"], ["time", "metric"]
EXPECTED = {  # query id → result columns, in order
    "finsent-market-overview:Items scored": ["items"],
    "finsent-market-overview:Negative share": ["negative_share"],
    "finsent-market-overview:Mean score": ["mean_score"],
    "finsent-market-overview:Open alerts": ["open_alerts"],
    "finsent-market-overview:Volume by topic (items per interval)": TS + ["items"],
    "finsent-market-overview:Negative share by topic": TS + ["negative_share"],
    "finsent-market-overview:Mean score by topic (−1 negative … +1 positive)": TS + ["mean_score"],
    "finsent-market-overview:Most negative recent items": T + ["source", "headline", "topic", "tickers", "p_negative",
                                                                "score", "url"],
    "finsent-market-overview:Tickers by negative items": ["ticker", "items", "negatives", "negative_share"],
    "finsent-market-overview:Entities by negative share (own sentiment, 5+ of the latest 20,000 mentions)": [
        "ticker", "name", "items", "negatives", "negative_share", "mean_score", "mean_relevance", "by_name_only",
        "own_reading"],
    "finsent-market-overview:Stories: most copies (seen in range, up to 72 h back)": T + [
        "story_id", "headline", "topic", "sentiment", "copies", "sources", "seen_on", "tickers", "last_seen"],
    "finsent-market-overview:Stories: novel share by topic (latest 20,000 items)": [
        "topic", "items", "novel", "novel_share", "most_copies"],
    "finsent-market-overview:annotation:finsent alerts": ["time", "timeend", "text", "tags"],
    "finsent-ticker:Mentions of ${ticker}": ["items"],
    "finsent-ticker:Negative share of ${ticker}": ["negative_share"],
    "finsent-ticker:Open alerts on ${ticker}": ["open_alerts"],
    "finsent-ticker:${ticker}: items by sentiment": T + ["negative", "neutral", "positive"],
    "finsent-ticker:Negative share: ${ticker} and topics": TS + ["negative_share"],
    "finsent-ticker:${ticker}: mentions by source (filtered by source and topic)": TS + ["items"],
    "finsent-ticker:${ticker}: latest items (relevance and sentiment of ${ticker} in each)": T + [
        "source", "headline", "topic", "sentiment", "relevance", "found_as", "p_negative", "score", "tickers",
        "model_version", "url"],
    "finsent-ticker:${ticker}: named alongside in its latest 2,000 items (other: that entity, this: ${ticker}, own tone)": [
        "ticker", "name", "items", "other_negative_share", "this_negative_share", "other_mean_score",
        "this_mean_score"],
    "finsent-ticker:${ticker}: alerts": T + ["state", "severity", "n", "negatives", "baseline_rate", "z", "p_value",
                                             "resolved_at", "samples"],
    "finsent-ticker:annotation:finsent alerts": ["time", "timeend", "text", "tags"],
    "finsent-ticker:variable:ticker": ["key"],
    "finsent-ticker:variable:source": ["key"],
    "finsent-ticker:variable:topic": ["key"],
    "finsent-alerts:Open alerts": ["open_alerts"],
    "finsent-alerts:Opened in range": ["opened"],
    "finsent-alerts:Median time to resolve": ["median_ttr_s"],
    "finsent-alerts:High severity opened": ["high"],
    "finsent-alerts:Alerts opened by severity": TS + ["alerts"],
    "finsent-alerts:Open alerts (evidence)": T + ["key_type", "key", "severity", "revision", "window_start",
                                                  "window_end", "n", "negatives", "baseline_rate", "baseline_n", "z",
                                                  "p_value", "samples"],
    "finsent-alerts:Alerts by key and severity": ["key_type", "key", "severity", "alerts", "open", "mean_ttr_s",
                                                  "max_z", "min_p_value"],
    "finsent-alerts:Resolved alerts and time to resolve": T + ["resolved_at", "key_type", "key", "severity", "n",
                                                               "negatives", "baseline_rate", "p_value", "ttr_s"],
    "finsent-alerts:Evidence: sample items of recent alerts": T + ["key_type", "key", "severity", "source", "headline",
                                                                   "p_negative", "url"],
    "finsent-alerts:annotation:finsent alerts": ["time", "timeend", "text", "tags"],
}
QUERIES = sql_queries()


@pytest.fixture(scope="module")
def seeded(postgres):
    """A database with 3,000 items over the last 6 h and five alerts; yields (dsn, now)."""
    url = fresh_db(postgres, "dash_small")
    now = utc_now()
    asyncio.run(seed_small(url, now))
    yield libpq_dsn(url), now


def run(conn: psycopg.Connection, q: Query, now) -> tuple[list[str], list[tuple]]:
    rng = TimeRange.last(q.span(), now)
    sql = expand(q.sql, rng, variable_values(conn, q.dashboard, rng), q.min_interval)
    cur = conn.execute(sql)
    return [c.name for c in cur.description], cur.fetchall()


def test_every_query_has_an_expectation():
    assert sorted(q.id for q in QUERIES) == sorted(EXPECTED)


@pytest.mark.parametrize("q", QUERIES, ids=lambda q: q.id)
def test_query_returns_expected_columns_and_rows(seeded, q: Query):
    dsn, now = seeded
    with psycopg.connect(dsn) as conn:
        columns, rows = run(conn, q, now)
    assert columns == EXPECTED[q.id]
    assert rows, f"{q.id}: no rows"
    if q.format == "time_series":
        assert all(r[0] is not None for r in rows) and [r[0] for r in rows] == sorted(r[0] for r in rows)
        assert any(isinstance(v, (int, float)) or v.__class__.__name__ == "Decimal" for v in rows[0][1:])


def psql() -> str:
    import shutil
    from pathlib import Path

    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(bundled) if bundled.exists() else shutil.which("psql")


def test_grafana_reader_role_runs_every_query_and_sees_no_secrets(seeded):
    """dashboards/provisioning/postgres/grafana-reader.sql (run by compose's grafana-db service)."""
    import subprocess

    from tests.dashboards.conftest import GENERATED

    dsn, now = seeded
    script = GENERATED.parent / "provisioning" / "postgres" / "grafana-reader.sql"
    for _ in range(2):  # idempotent: compose runs it on every `up`
        subprocess.run([psql(), dsn, "-q", "-v", "ON_ERROR_STOP=1", "-v", "password=not-a-real-one", "-f", str(script)],
                       check=True, capture_output=True, timeout=60)
    with psycopg.connect(dsn.replace("//postgres@", "//grafana_reader@")) as conn:
        for q in QUERIES:
            assert run(conn, q, now)[1], q.id
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT secret FROM subscription")


def _query(title_start: str) -> Query:
    return next(q for q in QUERIES if q.title.startswith(title_start))


def test_entities_by_negative_share_counts_each_entity_in_its_own_tone(seeded):
    """The seed gives a second entity the opposite of its item's tone: the panel must count the
    entity rows (counted ones only), not the items' sentiment."""
    from collections import defaultdict

    from tests.dashboards.seed import entities_of, small_events

    dsn, now = seeded
    rows = [x for e in small_events(now) for x in entities_of(e) if x[11]]
    per: dict[str, list[str]] = defaultdict(list)
    for x in rows:
        per[x[3]].append(x[6])
    want = sorted(((t, len(v), v.count("negative")) for t, v in per.items() if len(v) >= 5),
                  key=lambda r: (-r[2] / r[1], -r[1], r[0]))[:25]
    with psycopg.connect(dsn) as conn:
        columns, got = run(conn, _query("Entities by negative share"), now)
    assert [(r[0], r[2], r[3]) for r in got] == want
    by_item = {e[1]: e[12] for e in small_events(now)}  # the items' own tone gives other counts
    item_view = {t: sum(by_item[x[1]] == "negative" for x in rows if x[3] == t) for t, _, _ in want}
    assert any(item_view[t] != k for t, _, k in want)


def test_named_alongside_pairs_the_ticker_with_the_other_entities_of_its_items(seeded):
    from collections import Counter

    from tests.dashboards.seed import entities_of, small_events

    dsn, now = seeded
    q = _query("${ticker}: named alongside")
    with psycopg.connect(dsn) as conn:
        from dashboards.macros import TimeRange

        ticker = variable_values(conn, q.dashboard, TimeRange.last(q.span(), now))["ticker"]
        columns, got = run(conn, q, now)
    ents = [entities_of(e) for e in small_events(now)]
    want = Counter(o[3] for xs in ents for t in xs if t[3] == ticker and t[11]
                   for o in xs if o[3] != ticker and o[11])
    assert got and {r[0]: r[2] for r in got} == dict(sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:25])
    # in the seed a second entity reads opposite to the first, so the two shares differ
    assert any(r[3] != r[4] for r in got)


def test_top_stories_lists_the_most_copied_stories_with_their_founding_headline(seeded):
    """The seed's stories (seed.story_plan): one syndicated story copied every 97th event, stories
    of four items, the rest alone; the panel ranks them by copies and names each by its first item."""
    from tests.dashboards.seed import small_events, story_plan

    dsn, now = seeded
    events = small_events(now)
    _, stories = story_plan(events)
    want = sorted(stories, key=lambda r: (-r[7], -r[4].timestamp(), r[1]))[:25]
    headline = {f"{e[0]}/{e[1]}": e[4] for e in events}  # by story id: the founder's source/id
    with psycopg.connect(dsn) as conn:
        columns, got = run(conn, _query("Stories: most copies"), now)
    assert [(r[1], r[5], r[6], r[7].split()) for r in got] == [(w[1], w[7], len(w[8]), w[8]) for w in want]
    assert [r[2] for r in got] == [headline[w[1]] for w in want]
    assert got[0][1].endswith("/e5") and got[0][5] > 10 and all(r[5] == 4 for r in got[1:]), got[:3]  # the syndicated one first


def test_novel_share_by_topic_counts_first_items_of_stories_and_leaves_out_unassigned_rows(seeded):
    from collections import defaultdict

    from tests.dashboards.seed import small_events, story_plan

    dsn, now = seeded
    events = small_events(now)
    per, _ = story_plan(events)
    by_topic: dict[str, list] = defaultdict(list)
    for e, st in zip(events, per):
        if st is not None:
            by_topic[e[10]].append(st)
    want = {t: (len(v), sum(s[1] for s in v), max(s[2] for s in v)) for t, v in by_topic.items()}
    with psycopg.connect(dsn) as conn:
        columns, got = run(conn, _query("Stories: novel share by topic"), now)
    assert {r[0]: (r[1], r[2], r[4]) for r in got} == want
    assert all(abs(r[3] - r[2] / r[1]) < 1e-9 for r in got)
    assert [r[3] for r in got] == sorted(r[3] for r in got)
    assert sum(r[1] for r in got) < len(events)  # rows without a story are not counted as novel or copies
