"""Every SQL query of the generated dashboards (panels, annotations, template variables), and
the variable values Grafana would send with them on first load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg

from dashboards.macros import TimeRange, expand

GENERATED = Path(__file__).resolve().parents[2] / "dashboards" / "generated"


@dataclass(frozen=True)
class Query:
    dashboard: str  # uid
    title: str  # panel title, "annotation:<name>" or "variable:<name>"
    sql: str
    format: str
    min_interval: str | None
    time_from: str  # the dashboard's default range, e.g. "now-6h"

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.title}"

    def span(self) -> str:
        return self.time_from.removeprefix("now-")


def dashboards() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(GENERATED.glob("*.json"))]


def sql_queries(kind: str | None = None) -> list[Query]:
    out = []
    for d in dashboards():
        q = lambda title, sql, fmt, iv=None: Query(d["uid"], title, sql, fmt, iv, d["time"]["from"])  # noqa: E731
        for p in d.get("panels", []):
            out += [q(p["title"], t["rawSql"], t["format"], p.get("interval")) for t in p.get("targets", []) if "rawSql" in t]
        for a in d.get("annotations", {}).get("list", []):
            if "rawSql" in (a.get("target") or {}):
                out.append(q(f"annotation:{a['name']}", a["target"]["rawSql"], "table"))
        for v in d.get("templating", {}).get("list", []):
            if v["type"] == "query":
                out.append(q(f"variable:{v['name']}", v["query"], "table"))
    return [x for x in out if kind is None or x.title.startswith(kind)]


def variable_values(conn: psycopg.Connection, uid: str, rng: TimeRange) -> dict[str, str | list[str]]:
    """What Grafana sends on first load: All (every option) for multi-value variables, the first
    option for single-value ones; query variables are run on `conn` as Grafana would."""
    values: dict[str, str | list[str]] = {}
    board = next(d for d in dashboards() if d["uid"] == uid)
    for v in board.get("templating", {}).get("list", []):
        if v["type"] == "query":
            options = [r[0] for r in conn.execute(expand(v["query"], rng, values)).fetchall()]
        else:
            options = [o["value"] for o in v.get("options", [])]
        assert options, f"{uid}: variable {v['name']} has no options"
        values[v["name"]] = options if v.get("multi") else options[0]
    return values
