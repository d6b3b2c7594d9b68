"""What the API can still answer once history ages out (issue 22, core/history.py).

- Raw events: a day past FINSENT_RETENTION_RAW_DAYS whose partitions were dropped is 'dropped' in
  `history_day`; an events request over it answers 410 with where the archive is
  (FINSENT_ARCHIVE_DIR, or the directory recorded for that day) and how to bring it back
  (`finsent history restore DAY`; a restored day is readable again).
- Series: each rollup is kept for its own retention (minute FINSENT_RETENTION_MINUTE_DAYS, 5-minute
  FINSENT_RETENTION_5M_DAYS, hourly FINSENT_RETENTION_HOUR_DAYS; 0 = forever). A series is summed
  from the coarsest rollup that tiles its bucket (fewest rows); when that one no longer covers the
  span's start, a finer one never does either (finer rollups are kept less long), so the request is
  a 400 naming the finest bucket still available at that start.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from fastapi import HTTPException

from api import queries as q
from core.settings import Settings

# (rollup seconds, resolution name, table, time column, settings attribute of its retention)
ROLLUPS = ((3600, "1h", "event_rollup_hour", "bucket", "retention_hour_days"),
           (300, "5m", "event_rollup_5m", "bucket", "retention_5m_days"),
           (60, "1m", "event_rollup_minute", "minute", "retention_minute_days"))


def kept_since(days: int, today: date | None = None) -> datetime | None:
    """The oldest time a table kept `days` days still holds (upkeep drops whole days before
    midnight of today - days, UTC); None when kept forever."""
    if not days:
        return None
    today = today or datetime.now(timezone.utc).date()
    return datetime.combine(today - timedelta(days=days), time(), timezone.utc)


def rollup_for(settings: Settings, step_s: int, start: datetime, buckets: dict[str, int]) -> tuple[str, str]:
    """(resolution, SQL) for a series bucket of `step_s` starting at `start`, or a 400."""
    tiling = [r for r in ROLLUPS if step_s % r[0] == 0]
    for seconds, name, table, col, attr in tiling:  # coarsest first
        since = kept_since(getattr(settings, attr, 0))
        if since is None or start >= since:
            return name, q.series_statement(table, col, step_s, seconds)
    usable = [b for b, s in buckets.items()
              if any(s % r[0] == 0 and (kept_since(getattr(settings, r[4], 0)) is None
                                        or start >= kept_since(getattr(settings, r[4], 0))) for r in ROLLUPS)]
    kept = ", ".join(f"{r[1]} rollup {getattr(settings, r[4], 0) or 'forever'}"
                     + (" days" if getattr(settings, r[4], 0) else "") for r in ROLLUPS)
    hint = f"use bucket {usable[0]} or coarser" if usable else "no rollup covers it"
    raise HTTPException(400, f"bucket too fine for a span starting {start.isoformat()}: rollups kept ({kept}); {hint}")


def raw_kept_since(settings: Settings) -> datetime | None:
    return kept_since(getattr(settings, "retention_raw_days", 0))


async def refuse_archived(conn, settings: Settings, start: datetime, end: datetime) -> None:
    """410 when [start, end) covers a raw day whose partitions were dropped (restored days are back)."""
    last = (end - timedelta(microseconds=1)).astimezone(timezone.utc).date()
    rows = await conn.fetch(q.DROPPED_DAYS, start.astimezone(timezone.utc).date(), last)
    if rows:
        raise archived(settings, [r["day"] for r in rows], rows[0]["archive_dir"])


def archived(settings: Settings, days: list[date], recorded_dir: str | None) -> HTTPException:
    where = settings.archive_dir or recorded_dir
    shown = ", ".join(d.isoformat() for d in days[:5]) + (f" and {len(days) - 5} more" if len(days) > 5 else "")
    place = (f"its Parquet archive is in {where} (one file per table and day, with a manifest)" if where
             else "it was dropped without an archive (FINSENT_ARCHIVE_DIR was not set)")
    how = (f"; bring a day back with `finsent history restore {days[0].isoformat()}`" if where else "")
    return HTTPException(410, f"events of {shown} are past raw retention ({getattr(settings, 'retention_raw_days', 0)} "
                              f"days) and no longer in the database: {place}{how}. Series over those days are "
                              "still answered from the rollups (GET /v1/series)")


DROPPED_RANGE = "SELECT min(day), max(day), count(*) FROM history_day WHERE state = 'dropped'"


async def not_found(conn, what: str) -> HTTPException:
    """404 for an event looked up by its id alone: when raw days were dropped, it may be in one of
    them, and the message says so and how to bring a day back."""
    lo, hi, n = await conn.fetchrow(DROPPED_RANGE)
    if not n:
        return HTTPException(404, f"{what} not found")
    return HTTPException(404, f"{what} not found in the database; {n} day(s) between {lo} and {hi} are archived "
                              "and no longer in it: if it is from one of them, `finsent history restore DAY`")
