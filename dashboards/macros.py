"""Grafana's Postgres-datasource query expansion, reproduced so that the tests can run every
panel's SQL against a real Postgres without a Grafana server. Two steps, as in Grafana:

1. the frontend interpolates template variables (`$var`, `${var}`, `[[var]]`) and the
   built-ins `$__interval` / `$__interval_ms`; a multi-value or include-All variable becomes
   'a','b' (each value quoted, ' doubled), a single-value one is inserted with ' doubled;
2. the backend expands the macros: `$__timeFilter(c)` → `c BETWEEN 'from' AND 'to'`,
   `$__timeGroup(c, 1m)` → `floor(extract(epoch from c)/60)*60` (`…Alias` adds `AS "time"`),
   `$__timeFrom()` / `$__timeTo()` → quoted RFC 3339 times, `$__unixEpochFilter`,
   `$__unixEpochGroup(Alias)`.

    from dashboards.macros import TimeRange, expand
    sql = expand(raw_sql, TimeRange.last("6h"), {"topic": ["Earnings", "M&A"]}, min_interval="1m")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Grafana's rangeutil.roundInterval: (raw interval below this many ms → this interval).
ROUND = [(15, "10ms"), (35, "20ms"), (75, "50ms"), (150, "100ms"), (350, "200ms"), (750, "500ms"), (1500, "1s"),
         (3500, "2s"), (7500, "5s"), (12500, "10s"), (17500, "15s"), (25000, "20s"), (45000, "30s"), (90000, "1m"),
         (210000, "2m"), (450000, "5m"), (750000, "10m"), (1050000, "15m"), (1500000, "20m"), (2700000, "30m"),
         (5400000, "1h"), (9000000, "2h"), (16200000, "3h"), (24300000, "6h"), (604800000, "24h"),
         (1814400000, "1w"), (3628800000, "30d")]
MACRO = re.compile(r"\$(__[_a-zA-Z0-9]+)\(([^)]*)\)")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def seconds(text: str) -> float:
    """'1m' → 60.0, '500ms' → 0.5 (Grafana's gtime.ParseInterval for the units it accepts)."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip().strip("'\""))
    if not m:
        raise ValueError(f"not an interval: {text!r}")
    return int(m.group(1)) * UNITS[m.group(2)]


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: str, now: datetime | None = None) -> TimeRange:
        now = now or datetime.now(timezone.utc)
        return cls(now - timedelta(seconds=seconds(span)), now)

    def interval(self, max_points: int = 1000, min_interval: str | None = None) -> str:
        """The `$__interval` Grafana picks: range / points, rounded, never below the panel's min."""
        raw_ms = (self.end - self.start).total_seconds() * 1000 / max_points
        text = next((t for limit, t in ROUND if raw_ms < limit), "1y")
        if min_interval and seconds(min_interval) > seconds(text):
            return min_interval
        return text


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def render_variable(value: str | list[str], multi: bool) -> str:
    if isinstance(value, list):
        return ",".join(quote(v) for v in value)
    return quote(value) if multi else str(value).replace("'", "''")


def interpolate(sql: str, variables: dict[str, str | list[str]], interval: str) -> str:
    """Step 1 (frontend): template variables; a list value is a multi-value selection."""
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name == "__interval_ms":
            return str(int(seconds(interval) * 1000))
        if name == "__interval":
            return interval
        if name.startswith("__") or name not in variables:
            return m.group(0)
        return render_variable(variables[name], isinstance(variables[name], list))

    return VARIABLE.sub(one, sql)


def macro(name: str, args: list[str], rng: TimeRange) -> str:
    """Step 2 (backend): Grafana's Postgres macro engine for one macro call."""
    start, end = rfc3339(rng.start), rfc3339(rng.end)
    if name == "__timeFilter":
        return f"{args[0]} BETWEEN '{start}' AND '{end}'"
    if name == "__timeFrom":
        return f"'{start}'"
    if name == "__timeTo":
        return f"'{end}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        secs = f"{seconds(args[1]):g}"
        group = f"floor(extract(epoch from {args[0]})/{secs})*{secs}"
        return group + (' AS "time"' if name.endswith("Alias") else "")
    if name == "__unixEpochFilter":
        return f"{args[0]} >= {int(rng.start.timestamp())} AND {args[0]} <= {int(rng.end.timestamp())}"
    if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
        secs = f"{seconds(args[1]):g}"
        group = f"floor(({args[0]})/{secs})*{secs}"
        return group + (' AS "time"' if name.endswith("Alias") else "")
    raise ValueError(f"macro ${name} is not supported by Grafana's Postgres datasource here")


def expand(sql: str, rng: TimeRange, variables: dict[str, str | list[str]] | None = None,
           min_interval: str | None = None, max_points: int = 1000) -> str:
    """Both steps: what Grafana's Postgres datasource finally sends to the server."""
    sql = interpolate(sql, variables or {}, rng.interval(max_points, min_interval))
    return MACRO.sub(lambda m: macro(m.group(1), [a.strip() for a in m.group(2).split(",")], rng), sql)
