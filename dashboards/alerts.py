"""Alerts: open and resolved alerts by key and severity, with their evidence (n, negatives,
baseline, z, p-value, sample headlines) and time to resolve. Variables: key type, severity.

    python -m dashboards.main     # regenerates dashboards/generated/alerts.json
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (Sql, alert_annotation, dashboard, grid, series, single, stacked, unit_override)

UID = "finsent-alerts"
FILTER = "key_type IN ($key_type) AND severity IN ($severity)"
IN_RANGE = "opened_at <= $__timeTo() AND coalesce(resolved_at, now()) >= $__timeFrom()"
TTR = "extract(epoch FROM resolved_at - opened_at)"


def custom_variable(name: str, label: str, values: list[str]) -> db.CustomVariable:
    options = [dm.VariableOption(selected=False, text=v, value=v) for v in values]
    return (db.CustomVariable(name).label(label).values(",".join(values)).options(options).multi(True)
            .include_all(True).current(dm.VariableOption(selected=True, text="All", value="$__all")))


def open_stat() -> db.Panel:
    return single("Open alerts", Sql(f"SELECT count(*) AS open_alerts FROM alert WHERE state = 'open' AND {FILTER}",
                                     "table"))


def opened_stat() -> db.Panel:
    return single("Opened in range", Sql(f"""
        SELECT count(*) AS opened FROM alert WHERE $__timeFilter(opened_at) AND {FILTER}""", "table"))


def ttr_stat() -> db.Panel:
    return single("Median time to resolve", Sql(f"""
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {TTR}) AS median_ttr_s
        FROM alert WHERE state = 'resolved' AND $__timeFilter(opened_at) AND {FILTER}""", "table"), unit="s")


def high_stat() -> db.Panel:
    return single("High severity opened", Sql(f"""
        SELECT count(*) AS high FROM alert WHERE severity = 'high' AND $__timeFilter(opened_at) AND {FILTER}""",
                                              "table"))


def opened_by_severity() -> db.Panel:
    q = Sql(f"""
        SELECT $__timeGroupAlias(opened_at, $__interval), severity AS metric, count(*) AS alerts
        FROM alert WHERE $__timeFilter(opened_at) AND {FILTER}
        GROUP BY 1, 2 ORDER BY 1, 2""")
    return stacked(series("Alerts opened by severity", q, w=24)).interval("5m").draw_style("bars")


def open_alerts() -> db.Panel:
    q = Sql(f"""
        SELECT opened_at AS "time", key_type, key, severity, revision, window_start, window_end, n, negatives,
               baseline_rate, baseline_n, z, p_value, array_to_string(sample_event_ids, ' ') AS samples
        FROM alert WHERE state = 'open' AND {FILTER}
        ORDER BY opened_at DESC LIMIT 200""", "table")
    return grid("Open alerts (evidence)", q).override_by_name("baseline_rate", unit_override("percentunit"))


def by_key_and_severity() -> db.Panel:
    q = Sql(f"""
        SELECT key_type, key, severity, count(*) AS alerts, count(*) FILTER (WHERE state = 'open') AS open,
               avg({TTR}) AS mean_ttr_s, max(z) AS max_z, min(p_value) AS min_p_value
        FROM alert WHERE {IN_RANGE} AND {FILTER}
        GROUP BY 1, 2, 3 ORDER BY alerts DESC, key LIMIT 200""", "table")
    return grid("Alerts by key and severity", q, w=12).override_by_name("mean_ttr_s", unit_override("s"))


def resolved_alerts() -> db.Panel:
    q = Sql(f"""
        SELECT opened_at AS "time", resolved_at, key_type, key, severity, n, negatives, baseline_rate, p_value,
               {TTR} AS ttr_s
        FROM alert WHERE state = 'resolved' AND {IN_RANGE} AND {FILTER}
        ORDER BY resolved_at DESC LIMIT 200""", "table")
    return (grid("Resolved alerts and time to resolve", q, w=12).override_by_name("ttr_s", unit_override("s"))
            .override_by_name("baseline_rate", unit_override("percentunit")))


def evidence() -> db.Panel:
    # sample_event_ids hold 'source/id'; the join reads the primary key (source, id, published_at)
    # and bounds published_at by the alert's window so only that day's partitions are touched.
    q = Sql(f"""
        WITH recent AS (
            SELECT id, key_type, key, severity, window_start, window_end, sample_event_ids FROM alert
            WHERE {IN_RANGE} AND {FILTER} ORDER BY opened_at DESC LIMIT 20
        ), samples AS (
            SELECT r.*, split_part(s, '/', 1) AS source, substr(s, strpos(s, '/') + 1) AS event_id
            FROM recent r, unnest(r.sample_event_ids) AS s
        )
        SELECT s.window_start AS "time", s.key_type, s.key, s.severity, e.source,
               coalesce(e.title, left(e.text, 200)) AS headline, e.p_negative, e.url
        FROM samples s JOIN scored_event e ON e.source = s.source AND e.id = s.event_id
             AND e.published_at BETWEEN s.window_start - interval '1 hour' AND s.window_end + interval '1 hour'
        ORDER BY s.window_start DESC, e.p_negative DESC LIMIT 200""", "table")
    return grid("Evidence: sample items of recent alerts", q, h=12).override_by_name(
        "p_negative", unit_override("percentunit"))


def build() -> db.Dashboard:
    panels = [open_stat(), opened_stat(), ttr_stat(), high_stat(), opened_by_severity(), open_alerts(),
              by_key_and_severity(), resolved_alerts(), evidence()]
    d = dashboard(UID, "finsent · Alerts", "Negative-surge alerts: open, resolved, evidence, time to resolve.",
                  panels, time_from="now-24h")
    for var in (custom_variable("key_type", "Key type", ["topic", "ticker"]),
                custom_variable("severity", "Severity", ["low", "medium", "high"])):
        d = d.with_variable(var)
    return d.annotation(alert_annotation(FILTER))
