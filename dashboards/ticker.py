"""Ticker drill-down: one ticker (variable `ticker`), its sentiment over time, its negative share
beside the chosen topics', its mentions by source, its items and its alerts. `source` and
`topic` are multi-value variables (Grafana writes them as 'a','b' into `IN (...)`).

    python -m dashboards.main     # regenerates dashboards/generated/ticker.json
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.common import (Sql, alert_annotation, dashboard, grid, link, series, single, sql_variable,
                               stacked, unit_override)

UID = "finsent-ticker"
TICKER = "key_type = 'ticker' AND key = '${ticker}'"
EVENTS = """tickers @> ARRAY['${ticker}']::varchar[] AND source IN ($source) AND topic IN ($topic)
        AND $__timeFilter(published_at)"""


def ticker_variable() -> db.QueryVariable:
    return sql_variable("ticker", "Ticker", """
        SELECT key FROM event_rollup_minute WHERE key_type = 'ticker' AND $__timeFilter(minute)
        GROUP BY key ORDER BY sum(n) DESC LIMIT 500""", multi=False).sort(0)


def source_variable() -> db.QueryVariable:
    return sql_variable("source", "Source", """
        SELECT DISTINCT key FROM event_rollup_minute WHERE key_type = 'source' AND $__timeFilter(minute)""")


def topic_variable() -> db.QueryVariable:
    return sql_variable("topic", "Topic", """
        SELECT DISTINCT key FROM event_rollup_minute WHERE key_type = 'topic' AND $__timeFilter(minute)""")


def mentions_stat() -> db.Panel:
    return single("Mentions of ${ticker}", Sql(f"""
        SELECT coalesce(sum(n), 0) AS items FROM event_rollup_minute WHERE {TICKER} AND $__timeFilter(minute)""",
                                               "table"), w=8)


def negative_share_stat() -> db.Panel:
    return single("Negative share of ${ticker}", Sql(f"""
        SELECT sum(negatives)::float / nullif(sum(n), 0) AS negative_share FROM event_rollup_minute
        WHERE {TICKER} AND $__timeFilter(minute)""", "table"), unit="percentunit", w=8)


def open_alerts_stat() -> db.Panel:
    return single("Open alerts on ${ticker}", Sql(f"""
        SELECT count(*) AS open_alerts FROM alert WHERE {TICKER} AND state = 'open'""", "table"), w=8)


def sentiment_volume() -> db.Panel:
    q = Sql(f"""
        SELECT $__timeGroupAlias(minute, $__interval), sum(negatives) AS negative, sum(neutrals) AS neutral,
               sum(positives) AS positive
        FROM event_rollup_minute WHERE {TICKER} AND $__timeFilter(minute)
        GROUP BY 1 ORDER BY 1""")
    return stacked(series("${ticker}: items by sentiment", q)).interval("1m")


def negative_share_vs_topics() -> db.Panel:
    q = Sql(f"""
        SELECT $__timeGroupAlias(minute, $__interval), CASE WHEN key_type = 'ticker' THEN key ELSE 'topic: ' || key END
                 AS metric, sum(negatives)::float / nullif(sum(n), 0) AS negative_share
        FROM event_rollup_minute
        WHERE (({TICKER}) OR (key_type = 'topic' AND key IN ($topic))) AND $__timeFilter(minute)
        GROUP BY 1, 2 ORDER BY 1, 2""")
    return series("Negative share: ${ticker} and topics", q, unit="percentunit").interval("1m").min(0).max(1)


def mentions_by_source() -> db.Panel:
    q = Sql(f"""
        SELECT $__timeGroupAlias(published_at, $__interval), source AS metric, count(*) AS items
        FROM scored_event WHERE {EVENTS}
        GROUP BY 1, 2 ORDER BY 1, 2""")
    return stacked(series("${ticker}: mentions by source (filtered by source and topic)", q, w=24)).interval("1m")


def items() -> db.Panel:
    """The ticker's items with what the entity linker said about it in each: relevance, how it was
    found (cashtag, feed tag, ticker, name) and that entity's own sentiment (event_entity)."""
    q = Sql("""
        SELECT s.published_at AS "time", s.source, coalesce(s.title, left(s.text, 160)) AS headline, s.topic,
               coalesce(e.sentiment, s.sentiment) AS sentiment, e.relevance,
               array_to_string(e.sources, ' ') AS found_as, s.p_negative, coalesce(e.score, s.score) AS score,
               array_to_string(s.tickers, ' ') AS tickers, s.model_version, s.url
        FROM scored_event s LEFT JOIN event_entity e ON e.source = s.source AND e.event_id = s.id
             AND e.published_at = s.published_at AND e.ticker = '${ticker}'
        WHERE s.tickers @> ARRAY['${ticker}']::varchar[] AND s.source IN ($source) AND s.topic IN ($topic)
              AND $__timeFilter(s.published_at)
        ORDER BY s.published_at DESC LIMIT 200""", "table")
    return (grid("${ticker}: latest items (relevance and sentiment of ${ticker} in each)", q, h=12)
            .override_by_name("headline", [link("open source item", "${__data.fields.url}")])
            .override_by_name("p_negative", unit_override("percentunit")))


def named_alongside() -> db.Panel:
    """The other entities of the ticker's items, each in its own tone in those items: who it is
    named with, and whether they fare better or worse (event_entity, both at or above the cut), in
    the ticker's newest 2,000 items in range."""
    q = Sql("""
        SELECT o.ticker, max(o.name) AS name, count(*) AS items,
               avg((o.sentiment = 'negative')::int)::float AS other_negative_share,
               avg((t.sentiment = 'negative')::int)::float AS this_negative_share,
               avg(o.score) AS other_mean_score, avg(t.score) AS this_mean_score
        FROM (SELECT * FROM event_entity WHERE ticker = '${ticker}' AND counted AND $__timeFilter(published_at)
              ORDER BY published_at DESC LIMIT 2000) AS t
        JOIN event_entity o ON o.source = t.source AND o.event_id = t.event_id
             AND o.published_at = t.published_at AND o.ticker <> t.ticker AND o.counted
        GROUP BY o.ticker ORDER BY items DESC, o.ticker LIMIT 25""", "table")
    drill = link("ticker drill-down", "/d/finsent-ticker?var-ticker=${__value.raw}&${__url_time_range}")
    panel = grid("${ticker}: named alongside in its latest 2,000 items (other: that entity, this: ${ticker}, own tone)", q, h=8)
    panel = panel.override_by_name("ticker", [drill])
    for col in ("other_negative_share", "this_negative_share"):
        panel = panel.override_by_name(col, unit_override("percentunit"))
    return panel


def alerts() -> db.Panel:
    q = Sql(f"""
        SELECT opened_at AS "time", state, severity, n, negatives, baseline_rate, z, p_value, resolved_at,
               array_to_string(sample_event_ids, ' ') AS samples
        FROM alert WHERE {TICKER} AND opened_at <= $__timeTo() AND coalesce(resolved_at, now()) >= $__timeFrom()
        ORDER BY opened_at DESC LIMIT 100""", "table")
    return grid("${ticker}: alerts", q, h=8).override_by_name("baseline_rate", unit_override("percentunit"))


def build() -> db.Dashboard:
    panels = [mentions_stat(), negative_share_stat(), open_alerts_stat(), sentiment_volume(),
              negative_share_vs_topics(), mentions_by_source(), items(), named_alongside(), alerts()]
    d = dashboard(UID, "finsent · Ticker drill-down", "One ticker: sentiment, sources, items and alerts.", panels)
    for var in (ticker_variable(), source_variable(), topic_variable()):
        d = d.with_variable(var)
    return d.annotation(alert_annotation(TICKER))
