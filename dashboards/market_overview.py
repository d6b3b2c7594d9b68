"""Market overview: volume and negative share by topic, a topic × time heatmap of mean score,
alerts as annotations, the most negative recent items and the tickers under pressure, and the
stories (issue 20: near-duplicates grouped, migration 0007): the most copied stories seen in the
range and the share of novel items (first of their story) per topic.
Series read the per-minute rollups (event_rollup_minute), never the raw events.

    python -m dashboards.main     # regenerates dashboards/generated/market-overview.json
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import heatmap
from grafana_foundation_sdk.builders import dashboard as db

from dashboards.common import (POSTGRES, Sql, alert_annotation, dashboard, grid, link, series, single, stacked,
                               unit_override)

UID = "finsent-market-overview"
TOPIC_SERIES = """
    SELECT $__timeGroupAlias(minute, $__interval), key AS metric, {value}
    FROM event_rollup_minute
    WHERE key_type = 'topic' AND $__timeFilter(minute)
    GROUP BY 1, 2 ORDER BY 1, 2"""


def items_stat() -> db.Panel:
    return single("Items scored", Sql("""
        SELECT coalesce(sum(n), 0) AS items FROM event_rollup_minute
        WHERE key_type = 'source' AND $__timeFilter(minute)""", "table"))


def negative_share_stat() -> db.Panel:
    return single("Negative share", Sql("""
        SELECT sum(negatives)::float / nullif(sum(n), 0) AS negative_share FROM event_rollup_minute
        WHERE key_type = 'source' AND $__timeFilter(minute)""", "table"), unit="percentunit")


def mean_score_stat() -> db.Panel:
    return single("Mean score", Sql("""
        SELECT sum(score_sum) / nullif(sum(n), 0) AS mean_score FROM event_rollup_minute
        WHERE key_type = 'source' AND $__timeFilter(minute)""", "table")).decimals(3).min(-1).max(1)


def open_alerts_stat() -> db.Panel:
    return single("Open alerts", Sql("SELECT count(*) AS open_alerts FROM alert WHERE state = 'open'", "table"))


def volume_by_topic() -> db.Panel:
    q = Sql(TOPIC_SERIES.format(value="sum(n) AS items"))
    return stacked(series("Volume by topic (items per interval)", q)).interval("1m")


def negative_share_by_topic() -> db.Panel:
    q = Sql(TOPIC_SERIES.format(value="sum(negatives)::float / nullif(sum(n), 0) AS negative_share"))
    return series("Negative share by topic", q, unit="percentunit").interval("1m").min(0).max(1)


def score_heatmap() -> heatmap.Panel:
    q = Sql(TOPIC_SERIES.format(value="sum(score_sum) / nullif(sum(n), 0) AS mean_score"))
    return (heatmap.Panel().title("Mean score by topic (−1 negative … +1 positive)").datasource(POSTGRES)
            .with_target(q).interval("5m").height(10).span(24).calculate(False).min(-1).max(1).cell_gap(1)
            .color(heatmap.HeatmapColorOptions().mode("scheme").scheme("RdYlGn").steps(64).min(-1).max(1)
                   .exponent(0.5).fill("dark-orange").reverse(False).scale("linear"))
            .rows_frame(heatmap.RowsHeatmapOptions().layout("unknown").value("mean score"))
            .y_axis(heatmap.YAxisConfig().unit("short").reverse(False)))


def most_negative_items() -> db.Panel:
    # The newest 2,000 negative items in range (index on published_at, read backwards), then
    # the most negative of them: bounded work whatever the range.
    q = Sql("""
        SELECT published_at AS "time", source, coalesce(title, left(text, 160)) AS headline, topic,
               array_to_string(tickers, ' ') AS tickers, p_negative, score, url
        FROM (SELECT * FROM scored_event WHERE $__timeFilter(published_at) AND sentiment = 'negative'
              ORDER BY published_at DESC LIMIT 2000) AS recent
        ORDER BY p_negative DESC, published_at DESC LIMIT 50""", "table")
    return (grid("Most negative recent items", q, w=16, h=12)
            .override_by_name("headline", [link("open source item", "${__data.fields.url}")])
            .override_by_name("p_negative", unit_override("percentunit")))


def tickers_under_pressure() -> db.Panel:
    q = Sql("""
        SELECT key AS ticker, sum(n) AS items, sum(negatives) AS negatives,
               sum(negatives)::float / nullif(sum(n), 0) AS negative_share
        FROM event_rollup_minute
        WHERE key_type = 'ticker' AND $__timeFilter(minute)
        GROUP BY key ORDER BY negatives DESC, key LIMIT 25""", "table")
    drill = link("ticker drill-down", "/d/finsent-ticker?var-ticker=${__value.raw}&${__url_time_range}")
    return (grid("Tickers by negative items", q, w=8, h=12).override_by_name("ticker", [drill])
            .override_by_name("negative_share", unit_override("percentunit")))


def entities_by_negative_share() -> db.Panel:
    """Who the items were about (event_entity rows at or above the relevance cut, each with its own
    sentiment): the entities with the highest negative share among those named at least 5 times in
    the newest 20,000 mentions in range (bounded work whatever the range), with how often only
    their name found them (no cashtag, no feed tag)."""
    q = Sql("""
        SELECT ticker, max(name) AS name, count(*) AS items,
               count(*) FILTER (WHERE sentiment = 'negative') AS negatives,
               avg((sentiment = 'negative')::int)::float AS negative_share, avg(score) AS mean_score,
               avg(relevance) AS mean_relevance,
               avg(('name' = ANY(sources) AND NOT sources && ARRAY['cashtag', 'tag']::varchar[])::int)::float
                 AS by_name_only,
               count(*) FILTER (WHERE sentiment_from = 'entity_head') AS own_reading
        FROM (SELECT * FROM event_entity WHERE $__timeFilter(published_at) AND counted
              ORDER BY published_at DESC LIMIT 20000) AS recent
        GROUP BY ticker HAVING count(*) >= 5
        ORDER BY negative_share DESC, items DESC, ticker LIMIT 25""", "table")
    drill = link("ticker drill-down", "/d/finsent-ticker?var-ticker=${__value.raw}&${__url_time_range}")
    panel = grid("Entities by negative share (own sentiment, 5+ of the latest 20,000 mentions)", q, w=24, h=10)
    panel = panel.override_by_name("ticker", [drill])
    for col in ("negative_share", "by_name_only"):
        panel = panel.override_by_name(col, unit_override("percentunit"))
    return panel


def top_stories() -> db.Panel:
    """The stories seen in the range (the `story` index, which keeps 72 h), most copies first,
    each with its founding event's headline: one story syndicated and reposted many times."""
    q = Sql("""
        SELECT s.first_at AS "time", s.story_id, coalesce(f.title, left(f.text, 160)) AS headline, f.topic,
               f.sentiment, s.copies, cardinality(s.sources) AS sources, array_to_string(s.sources, ' ') AS seen_on,
               array_to_string(s.keys, ' ') AS tickers, s.last_at AS last_seen
        FROM (SELECT * FROM story WHERE last_at >= $__timeFrom() AND first_at <= $__timeTo()
              ORDER BY copies DESC, last_at DESC LIMIT 25) AS s
        LEFT JOIN LATERAL (SELECT title, text, topic, sentiment FROM scored_event e
                           WHERE e.story_id = s.story_id AND e.published_at = s.first_at
                             AND e.source = s.source AND e.novel LIMIT 1) AS f ON true
        ORDER BY s.copies DESC, s.last_at DESC, s.story_id""", "table")
    return grid("Stories: most copies (seen in range, up to 72 h back)", q, w=16, h=10)


def novel_share_by_topic() -> db.Panel:
    """Per topic, how much of the flow is new stories rather than copies: the newest 20,000 items
    with a story in range (bounded work whatever the range; rows without a story are left out)."""
    q = Sql("""
        SELECT topic, count(*) AS items, count(*) FILTER (WHERE novel) AS novel,
               avg(novel::int)::float AS novel_share, max(copies) AS most_copies
        FROM (SELECT topic, novel, copies FROM scored_event
              WHERE $__timeFilter(published_at) AND story_id IS NOT NULL
              ORDER BY published_at DESC LIMIT 20000) AS recent
        GROUP BY topic ORDER BY novel_share, items DESC, topic""", "table")
    return (grid("Stories: novel share by topic (latest 20,000 items)", q, w=8, h=10)
            .override_by_name("novel_share", unit_override("percentunit")))


def build() -> db.Dashboard:
    panels = [items_stat(), negative_share_stat(), mean_score_stat(), open_alerts_stat(),
              volume_by_topic(), negative_share_by_topic(), score_heatmap(),
              most_negative_items(), tickers_under_pressure(), entities_by_negative_share(),
              top_stories(), novel_share_by_topic()]
    d = dashboard(UID, "finsent · Market overview",
                  "Volume and sentiment by topic from the per-minute rollups; alerts as annotations.", panels)
    return d.annotation(alert_annotation())

