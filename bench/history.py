"""History benchmark (not a test): bytes per stored row, and archive / verify / restore speed of one
day of raw history (core/history.py).

    python bench/history.py [--rows 2000000] [--entities-per-event 0.6]

An embedded PostgreSQL (pgserver) gets the schema at head and one day of N synthetic scored
events (each text two real ones from ../shared/data joined, so that rows do not repeat; 20
topics, 500 tickers) with about 0.6 entity rows per event, loaded by INSERT ... SELECT generate_series; the
day's partitions are VACUUM ANALYZEd. It prints:
  - bytes per row of scored_event and event_entity: the day's partitions with their indexes and
    TOAST (pg_total_relation_size) over the rows, which is what a day of history costs on disk;
  - the Parquet archive's bytes per row and its ratio to the database;
  - archive, verify and restore time, rows/s and MB/s (MB of the database partitions).
Measured on this machine, with whatever else runs on it (the table says the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import history  # noqa: E402
from core.pg import libpq_dsn, migrate  # noqa: E402
from core.settings import get_settings  # noqa: E402
from finsent.services import Postgres  # noqa: E402

FILL_EVENTS = """INSERT INTO scored_event (source, id, published_at, text, title, url, lang, tickers, ingested_at,
    topic, topic_confidence, sentiment, p_negative, p_neutral, p_positive, score, model_version)
SELECT (ARRAY['wire', 'rss', 'stocktwits', 'x'])[1 + i % 4], 'ev-' || i,
       $1::timestamptz + (i * interval '1 second' * 86399 / $2),
       (SELECT t FROM bench_text WHERE k = i % $3) || ' ' || (SELECT t FROM bench_text WHERE k = ((i::bigint * 7919) % $3)::int),
       CASE WHEN i % 3 = 0 THEN 'Headline ' || md5((i + 1)::text) END,
       CASE WHEN i % 2 = 0 THEN 'https://news.example.com/a/' || i END, 'en',
       CASE WHEN i % 5 < 3 THEN ARRAY['T' || (i % 500)] ELSE '{}' END,
       $1::timestamptz + (i * interval '1 second' * 86399 / $2) + interval '2 seconds',
       'topic' || (i % 20), 0.5 + (i % 50) / 100.0,
       (ARRAY['negative', 'neutral', 'positive'])[1 + i % 3], 0.2, 0.5, 0.3, ((i % 200) - 100) / 100.0,
       'finsent-minilm-v2+int8'
FROM generate_series(0, $2 - 1) AS i"""

FILL_ENTITIES = """INSERT INTO event_entity (source, event_id, published_at, ticker, name, relevance, sentiment, score,
    sentiment_from, spans, sources, counted, directory_version)
SELECT source, id, published_at, tickers[1], 'Company ' || tickers[1], 0.9, sentiment, score, 'item',
       '[[0, 5]]', '{cashtag}', true, 'pytickersymbols-1.17.10+curated-3'
FROM scored_event WHERE published_at >= $1 AND published_at < $1 + interval '1 day' AND cardinality(tickers) > 0"""


async def run(args) -> None:
    import asyncpg

    console = Console()
    base = Path(tempfile.mkdtemp(prefix="finsent-bench-history-"))
    base.chmod(0o755)
    pg = Postgres(base / "pg", database="bench").start()
    archive = base / "archive"
    try:
        migrate(pg.url)
        dsn = libpq_dsn(pg.url)
        conn = await asyncpg.connect(dsn)
        day = date.today() - timedelta(days=40)
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
        t = time.perf_counter()
        from bench.texts import realistic_mix

        pool = sorted(set(realistic_mix(args.data_dir, 40_000)))
        await conn.execute("CREATE TABLE bench_text (k int PRIMARY KEY, t text)")
        await conn.copy_records_to_table("bench_text", records=list(enumerate(pool)))
        await conn.execute(FILL_EVENTS, midnight, args.rows, len(pool))
        await conn.execute(FILL_ENTITIES, midnight)
        for table in history.DAY_TABLES:
            await conn.execute(f"VACUUM ANALYZE {history.partition_name(table, day)}")
        console.print(f"loaded {args.rows:,} events in {time.perf_counter() - t:.0f} s")

        sizes, rows = {}, {}
        for table in history.DAY_TABLES:
            part = history.partition_name(table, day)
            sizes[table] = await conn.fetchval(f"SELECT pg_total_relation_size('{part}')")
            rows[table] = await conn.fetchval(f"SELECT count(*) FROM {part}")
        db_mb = sum(sizes.values()) / 1e6

        t = time.perf_counter()
        report = await history.archive_day(conn, archive, day)
        t_archive = time.perf_counter() - t
        t = time.perf_counter()
        await history.verify_day(conn, archive, day)
        t_verify = time.perf_counter() - t
        await history.drop_day(conn, day, archive)
        t = time.perf_counter()
        restored = await history.restore_day(conn, archive, day)
        t_restore = time.perf_counter() - t
        assert restored.rows == rows, (restored.rows, rows)
        files = {table: history.day_file(archive, table, day).stat().st_size for table in history.DAY_TABLES}
        await conn.close()

        size = Table(title=f"one day on disk ({args.rows:,} events)")
        for col in ("table", "rows", "database bytes/row (with indexes)", "Parquet bytes/row", "Parquet / database"):
            size.add_column(col, justify="right")
        for table in history.DAY_TABLES:
            n = max(rows[table], 1)
            size.add_row(table, f"{rows[table]:,}", f"{sizes[table] / n:.0f}", f"{files[table] / n:.0f}",
                         f"{files[table] / sizes[table]:.2f}")
        console.print(size)
        total = sum(rows.values())
        speed = Table(title=f"archive, verify, restore of one day ({db_mb:.0f} MB in the database, load "
                            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        for col in ("step", "seconds", "rows/s", "MB/s (database MB)"):
            speed.add_column(col, justify="right")
        for name, sec in (("archive", t_archive), ("verify", t_verify), ("restore", t_restore)):
            speed.add_row(name, f"{sec:.1f}", f"{total / sec:,.0f}", f"{db_mb / sec:.1f}")
        console.print(speed)
        console.print(f"archive written: {report.bytes / 1e6:.1f} MB")
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--data-dir", type=Path, default=get_settings().data_dir)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
