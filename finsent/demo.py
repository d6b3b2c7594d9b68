"""`make demo` / `finsent demo`: the main job on embedded defaults.

Starts Kafka (scripts/kafka.sh) and PostgreSQL (pgserver) under var/demo, migrates, creates
the topics, starts the worker, feeds the simulated stream with a planted negative surge on
$ACME plus a few malformed messages, then prints what happened. A second run reuses the data.
Ctrl-C (or the end of the run when not on a terminal) stops everything.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from core.pg import migrate
from finsent.services import Kafka, Postgres, WorkerProcess, wait_for, worker_env
from core.settings import Settings
from stream.feed import produce
from stream.simulate import Surge, feed
from stream.topics import ensure_topics

console = Console(width=None if sys.stdout.isatty() else 120)
# A one-minute feed: 2 s slices, 20 s windows, 20 s of warm-up (production: 10 s, 120 s, 10 min).
DEMO_DETECTOR = {"slice_s": 2, "window_s": 20, "detector_warmup_s": 20, "lateness_s": 5}
BAD = [b"not json at all", b'{"id": "x1", "source": "wire-a"}', b'{"id": "x2", "source": "wire-a", "text": 5}',
       b'{"id": "x3", "source": "wire-a", "text": "\xff\xfe", "published_at": "2026-01-01T00:00:00Z"}']


def run_demo(data_dir: Path, seconds: float, rate: float, hold: bool | None = None, web_port: int = 6066) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    kafka, pg, worker = Kafka(data_dir / "kafka"), Postgres(data_dir / "pg"), None
    try:
        with console.status("starting Kafka and PostgreSQL"):
            kafka.start()
            pg.start()
            migrate(pg.url)
            settings = Settings(kafka_bootstrap=kafka.bootstrap, DATABASE_URL=pg.url, web_port=web_port, **DEMO_DETECTOR)
            asyncio.run(ensure_topics(settings))
        console.print(f"Kafka {kafka.bootstrap}   PostgreSQL {pg.dsn}")
        worker = WorkerProcess(worker_env(kafka.bootstrap, pg.url, web_port=web_port, **DEMO_DETECTOR),
                               data_dir / "worker.log").start()
        conn = psycopg.connect(pg.dsn, autocommit=True)
        before = conn.execute("SELECT count(*) FROM scored_event").fetchone()[0]
        started = datetime.now(timezone.utc)
        n = int(seconds * rate)
        surge_at = int(n * 0.7)
        events = list(feed(n, seed=int(time.time()) % 1000, surge=Surge("ACME", surge_at, 25), start=started,
                           spacing_s=1 / rate, prefix=f"demo{int(started.timestamp())}"))
        surge_time = time.time() + surge_at / rate
        console.print(f"feeding {n} simulated items over {seconds:.0f} s ({rate:.0f}/s), negative surge on $ACME at "
                      f"item {surge_at}, plus {len(BAD)} malformed messages")
        asyncio.run(produce(kafka.bootstrap, events[:surge_at] + BAD + events[surge_at:], settings.topic_news,
                            settings.topic_social, rate))
        wait_for(lambda: conn.execute("SELECT count(*) FROM scored_event").fetchone()[0] >= before + n, 120,
                 what="all rows in Postgres")
        time.sleep(2)
        report(conn, before, started, surge_time, data_dir, web_port)
        if hold if hold is not None else sys.stdin.isatty():
            console.print("worker still running; Ctrl-C stops everything")
            while worker.alive():
                time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        if worker:
            worker.stop()
        kafka.stop()
        pg.stop()
        console.print("stopped Kafka, PostgreSQL and the worker; data kept in " + str(data_dir))


def report(conn, before: int, started: datetime, surge_time: float, data_dir: Path, web_port: int) -> None:
    total = conn.execute("SELECT count(*) FROM scored_event").fetchone()[0]
    console.print(f"scored this run: {total - before} rows (scored_event holds {total})")
    t = Table()
    for col in ("sentiment", "rows", "mean score"):
        t.add_column(col)
    for row in conn.execute("SELECT sentiment, count(*), avg(score) FROM scored_event WHERE ingested_at >= %s "
                            "GROUP BY 1 ORDER BY 2 DESC", (started,)):
        t.add_row(row[0], str(row[1]), f"{row[2]:+.2f}")
    console.print(t)
    alerts = conn.execute("SELECT key_type, key, window_start, n, negatives, baseline_rate, baseline_n, z, p_value, "
                          "severity, sample_event_ids, state, opened_at FROM alert WHERE opened_at >= %s "
                          "ORDER BY opened_at", (started,)).fetchall()
    a = Table(title=f"alerts this run: {len(alerts)}")
    for col in ("key", "window", "n", "neg", "base share", "base n", "z", "p", "severity", "state", "vs surge"):
        a.add_column(col, no_wrap=True)
    for r in alerts:
        a.add_row(f"{r[0]}:{r[1]}", r[2].strftime("%H:%M:%S"), str(r[3]), str(r[4]), f"{r[5]:.2f}", f"{r[6]:.1f}",
                  f"{r[7]:.1f}", f"{r[8]:.0e}", r[9], r[11], f"{r[12].timestamp() - surge_time:+.1f}s")
    console.print(a)
    for r in alerts:
        for sid in r[10][:3]:
            source, _, eid = sid.partition("/")
            text = conn.execute("SELECT text FROM scored_event WHERE source=%s AND id=%s", (source, eid)).fetchone()
            console.print(f"  evidence {sid}: {text[0][:90] if text else '?'}")
    console.print(f"dead letters: topic finsent.deadletter (reason in headers); worker log {data_dir / 'worker.log'}; "
                  f"metrics http://127.0.0.1:{web_port}/metrics, health http://127.0.0.1:{web_port}/health")
