"""Alembic upgrade and downgrade against the real PostgreSQL; partitions created ahead."""

import uuid

import psycopg
import pytest

from core.pg import downgrade, migrate

pytestmark = pytest.mark.slow


def tables(dsn):
    with psycopg.connect(dsn) as c:
        return {r[0]: r[1] for r in c.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r','p')")}


def migrated_db(postgres) -> tuple[str, str]:
    """A new database at head: (async URL, libpq DSN)."""
    db = f"m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    url = postgres.url.replace("/postgres?", f"/{db}?")
    migrate(url)
    return url, url.replace("postgresql+asyncpg://", "postgresql://")


def test_upgrade_downgrade_upgrade(postgres):
    url, dsn = migrated_db(postgres)
    t = tables(dsn)
    assert t["scored_event"] == "p" and {"alert", "api_key", "subscription", "scored_event_default"} <= set(t)
    assert sum(name.startswith("scored_event_2") for name in t) == 9  # yesterday .. a week ahead
    with psycopg.connect(dsn, autocommit=True) as c:  # an old timestamp lands in the default partition
        c.execute("INSERT INTO scored_event (source, id, published_at, text, ingested_at, topic, topic_confidence, "
                  "sentiment, p_negative, p_neutral, p_positive, score, model_version) VALUES "
                  "('s','1','2001-01-01T00:00:00Z','t',now(),'macro',1,'neutral',0,1,0,0,'v')")
        assert c.execute("SELECT count(*) FROM scored_event_default").fetchone()[0] == 1
    downgrade(url)
    assert set(tables(dsn)) == {"alembic_version"}
    migrate(url)
    assert tables(dsn)["scored_event"] == "p"


def test_partition_upkeep_creates_days_ahead_idempotently(postgres):
    import asyncio

    import asyncpg

    from core.pg import ensure_partitions

    _, dsn = migrated_db(postgres)

    async def upkeep():
        conn = await asyncpg.connect(dsn)
        try:
            await ensure_partitions(conn, days_ahead=12)
            await ensure_partitions(conn, days_ahead=12)
        finally:
            await conn.close()

    asyncio.run(upkeep())
    assert sum(name.startswith("scored_event_2") for name in tables(dsn)) == 14  # yesterday .. 12 days ahead
