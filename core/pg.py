"""Migrations (Alembic) and partition upkeep for any DATABASE_URL.

    finsent migrate        # upgrade to head, then create the daily partitions
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
PAST_DAYS = 35  # rows in the default partition this recent get a partition of their own


def alembic_config(sync_url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def sync_url(async_url: str) -> str:
    return async_url.replace("+asyncpg", "+psycopg", 1)


def libpq_dsn(async_url: str) -> str:
    return async_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def migrate(async_url: str, revision: str = "head", days_ahead: int = 7) -> None:
    """Upgrade to `revision`; at head also create today's partitions and `days_ahead` more."""
    import psycopg
    from alembic import command

    command.upgrade(alembic_config(sync_url(async_url)), revision)
    if revision == "head":
        with psycopg.connect(libpq_dsn(async_url), autocommit=True) as conn:
            for day in partition_days(conn.execute(DEFAULT_DAYS, (PAST_DAYS,)).fetchall(), days_ahead):
                conn.execute("SELECT finsent_ensure_day_partition(%s)", (day,))


def downgrade(async_url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(sync_url(async_url)), revision)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


DEFAULT_DAYS = """SELECT DISTINCT (published_at AT TIME ZONE 'UTC')::date FROM scored_event_default
WHERE published_at >= now() - make_interval(days => %s)"""


def partition_days(default_rows: list, days_ahead: int, today: date | None = None) -> list[date]:
    """UTC days that need a partition: yesterday to `days_ahead` ahead, plus recent days whose
    rows landed in the default partition (they are moved out when the day is created)."""
    today = today or utc_today()
    wanted = {today + timedelta(days=d) for d in range(-1, days_ahead + 1)}
    return sorted(wanted | {r[0] for r in default_rows})


async def ensure_partitions(conn, days_ahead: int = 7, today: date | None = None) -> list[date]:
    """Create missing daily partitions on an asyncpg connection, one transaction per day (a
    failing day does not stop the others); returns the days created. Raises the first error
    after trying every day, so the caller can report it."""
    rows = await conn.fetch(DEFAULT_DAYS.replace("%s", "$1"), PAST_DAYS)
    created, first_error = [], None
    for day in partition_days([(r[0],) for r in rows], days_ahead, today):
        try:
            if await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day):
                created.append(day)
        except Exception as exc:  # noqa: BLE001 - reported after the other days are tried
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return created
