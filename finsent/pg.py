"""Postgres for tests and the demo: the `pgserver` wheel's PostgreSQL 16 in a data directory
of the project; migrations (Alembic) and partition upkeep for any DATABASE_URL."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"


def embedded(pgdata: Path, database: str = "finsent"):
    """Start (or reuse) an embedded server; returns (server, async SQLAlchemy URL)."""
    import pgserver

    server = pgserver.get_server(str(pgdata), cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {database};")
    return server, f"postgresql+asyncpg://postgres@/{database}?host={server.pgdata}"


def alembic_config(sync_url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def sync_url(async_url: str) -> str:
    return async_url.replace("+asyncpg", "+psycopg", 1)


def migrate(async_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(sync_url(async_url)), revision)


def downgrade(async_url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(sync_url(async_url)), revision)


async def ensure_partitions(conn, days_ahead: int = 7) -> None:
    """Create daily partitions from yesterday to `days_ahead` (asyncpg connection)."""
    from finsent.db import partition_ddl

    today = date.today()
    for d in range(-1, days_ahead + 1):
        await conn.execute(partition_ddl(today + timedelta(days=d)))
