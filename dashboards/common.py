"""Shared defaults of the finsent dashboards: datasource refs (uids fixed by the provisioning
files), a raw-SQL query type for Grafana's Postgres datasource (the SDK ships no builder for
it), and small panel constructors every dashboard module starts from.

    python -m dashboards.main     # writes dashboards/generated/*.json
"""

from __future__ import annotations

import json
import typing

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

# uids are also written in provisioning/datasources/finsent.yml: change both together.
POSTGRES = dm.DataSourceRef(type_val="grafana-postgresql-datasource", uid="finsent-postgres")
PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid="finsent-prometheus")
TAGS = ["finsent"]
Format = typing.Literal["time_series", "table"]


class SqlQuery(cogvariants.Dataquery):
    """A code-mode query of Grafana's SQL datasources (rawSql is what the backend runs)."""

    def __init__(self, raw_sql: str, fmt: Format, ref_id: str) -> None:
        self.raw_sql, self.format, self.ref_id = raw_sql, fmt, ref_id

    def to_json(self) -> dict[str, object]:
        return {"datasource": POSTGRES, "editorMode": "code", "format": self.format, "rawQuery": True,
                "rawSql": self.raw_sql, "refId": self.ref_id}


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str, fmt: Format = "time_series", ref_id: str = "A") -> None:
        self._internal = SqlQuery(dedent(raw_sql), fmt, ref_id)

    def build(self) -> SqlQuery:
        return self._internal


def dedent(sql: str) -> str:
    import textwrap

    return textwrap.dedent(sql).strip()


def promql(expr: str, legend: str = "__auto", ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).range().ref_id(ref_id).datasource(PROMETHEUS)


def series(title: str, query: cogbuilder.Builder, unit: str = "short", w: int = 12, h: int = 8,
           ds: dm.DataSourceRef = POSTGRES) -> timeseries.Panel:
    """A time series panel with the house defaults: lines, light fill, legend as a table."""
    return (timeseries.Panel().title(title).datasource(ds).with_target(query).unit(unit)
            .height(h).span(w).line_width(1).fill_opacity(10).show_points(cm.VisibilityMode.NEVER)
            .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.RIGHT).show_legend(True).calcs(["mean", "max"])))


def stacked(panel: timeseries.Panel) -> timeseries.Panel:
    return panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)).fill_opacity(60)


def grid(title: str, query: cogbuilder.Builder, w: int = 24, h: int = 10) -> table.Panel:
    return table.Panel().title(title).datasource(POSTGRES).with_target(query).height(h).span(w)


def single(title: str, query: cogbuilder.Builder, unit: str = "short", w: int = 6, h: int = 4,
           ds: dm.DataSourceRef = POSTGRES) -> stat.Panel:
    return (stat.Panel().title(title).datasource(ds).with_target(query).unit(unit).height(h).span(w)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))


def link(name: str, url: str) -> dm.DynamicConfigValue:
    """A field override value that makes each cell a link (`${__value.raw}` etc. in url)."""
    return dm.DynamicConfigValue(id_val="links", value=[{"title": name, "url": url, "targetBlank": True}])


def unit_override(unit: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="unit", value=unit)]


def sql_variable(name: str, label: str, sql: str, multi: bool = True) -> db.QueryVariable:
    """A template variable read from Postgres, refreshed with the time range. Multi-value ones
    include All and are interpolated by Grafana as 'a','b' (use them as `IN ($name)`)."""
    var = (db.QueryVariable(name).label(label).datasource(POSTGRES).query(dedent(sql))
           .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
           .multi(multi).include_all(multi))
    return var.current(dm.VariableOption(selected=True, text="All", value="$__all")) if multi else var


def alert_annotation(where: str = "TRUE") -> db.AnnotationQuery:
    """finsent alerts as region annotations (open → resolved), coloured red, tagged by severity."""
    sql = f"""
        SELECT opened_at AS "time", coalesce(resolved_at, now()) AS timeend,
               key_type || ' ' || key || ': ' || negatives || '/' || n || ' negative (baseline '
                 || round((baseline_rate * 100)::numeric, 1) || '%), p=' || to_char(p_value, '9.9EEEE') AS text,
               severity || ',' || key_type || ',' || key AS tags
        FROM alert
        WHERE opened_at <= $__timeTo() AND coalesce(resolved_at, now()) >= $__timeFrom() AND {where}
        ORDER BY opened_at DESC LIMIT 500"""
    return (db.AnnotationQuery().name("finsent alerts").datasource(POSTGRES).enable(True).hide(False)
            .icon_color("red").target(Sql(sql, "table", "Anno")))


def dashboard(uid: str, title: str, description: str, panels: list, time_from: str = "now-6h") -> db.Dashboard:
    """A dashboard with the house defaults; panels get ids 1..n in the order given (stable)."""
    d = (db.Dashboard(title).uid(uid).description(description).tags(TAGS).timezone("utc").editable()
         .time(time_from, "now").refresh("30s").tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .link(db.DashboardLink("finsent").type(dm.DashboardLinkType.DASHBOARDS).tags(TAGS).as_dropdown(True)
               .include_vars(False).keep_time(True)))
    for i, panel in enumerate(panels, start=1):
        d = d.with_row(panel) if isinstance(panel, db.Row) else d.with_panel(panel.id(i))
    return d


def to_json(d: db.Dashboard) -> str:
    return json.dumps(json.loads(JSONEncoder().encode(d.build())), sort_keys=True, indent=2) + "\n"
