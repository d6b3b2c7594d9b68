"""End-to-end pipeline benchmark (not a test): Kafka → worker → Postgres, on this machine.

    python bench/pipeline.py [--n 6000]

1. bare runtime: the worker's Scorer on the same texts in this process (texts/s, batch 64);
2. full-rate replay of N messages: end-to-end msgs/s from the first send to the last row
   stored (`stored_at`, set by Postgres at insert), and its ratio to (1);
3. a paced replay at half the measured maximum with a planted surge: produce→row latency
   p50/p99 (`stored_at` − send time carried in `published_at`) and the alert latency from the
   surge's first message to its alert row.

Everything (broker, Postgres, worker, producer) shares this machine's cores.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.pg import migrate  # noqa: E402
from finsent.services import Kafka, Postgres, WorkerProcess, wait_for, worker_env  # noqa: E402
from core.settings import Settings  # noqa: E402
from models.runtime import Scorer  # noqa: E402
from stream.feed import produce  # noqa: E402
from stream.simulate import Surge, feed  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402

console = Console()


def bare_rate(texts: list[str]) -> float:
    scorer = Scorer.from_artifact(max_batch=64)
    scorer.predict(texts[:64])
    t0 = time.perf_counter()
    for i in range(0, len(texts), 64):
        scorer.predict(texts[i : i + 64])
    return len(texts) / (time.perf_counter() - t0)


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FROM scored_event").fetchone()[0]


def main() -> None:
    import argparse
    import asyncio

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="finsent-bench-"))
    kafka, pg, worker = Kafka(tmp / "kafka"), Postgres(tmp / "pg"), None
    try:
        kafka.start()
        pg.start()
        migrate(pg.url)
        s = Settings(kafka_bootstrap=kafka.bootstrap, DATABASE_URL=pg.url, window_s=10)
        asyncio.run(ensure_topics(s))
        start = datetime.now(timezone.utc)
        full = list(feed(args.n, 1, start=start, spacing_s=0.01, prefix="full"))
        bare = bare_rate([e["text"] for e in full])
        worker = WorkerProcess(worker_env(kafka.bootstrap, pg.url, window_s=10, web_port=6099), tmp / "worker.log").start()
        asyncio.run(produce(kafka.bootstrap, full[:200], s.topic_news, s.topic_social))  # warm-up: model load, group join
        wait_for(lambda: count(pg.dsn) >= 200, 120, what="warm-up rows")
        t0 = time.time()
        asyncio.run(produce(kafka.bootstrap, full[200:], s.topic_news, s.topic_social))
        wait_for(lambda: count(pg.dsn) >= args.n, 600, interval=0.2, what="all rows")
        with psycopg.connect(pg.dsn) as c:
            last = c.execute("SELECT max(stored_at) FROM scored_event").fetchone()[0].timestamp()
        e2e = (args.n - 200) / (last - t0)

        half = e2e / 2
        n2 = int(half * 40)  # 40 s of paced traffic
        t_start = datetime.now(timezone.utc)
        paced = list(feed(n2, 2, Surge("ACME", int(n2 * 0.75), 30), start=t_start, spacing_s=1 / half, prefix="paced"))
        surge_sent = t_start.timestamp() + int(n2 * 0.75) / half
        asyncio.run(produce(kafka.bootstrap, paced, s.topic_news, s.topic_social, rate=half))
        wait_for(lambda: count(pg.dsn) >= args.n + n2, 300, interval=0.2, what="paced rows")
        time.sleep(2)
        with psycopg.connect(pg.dsn) as c:
            lat = np.array([float(r[0]) for r in c.execute(
                "SELECT extract(epoch FROM stored_at - published_at) FROM scored_event WHERE id LIKE 'paced-%'")])
            alert = c.execute("SELECT min(opened_at) FROM alert WHERE key = 'ACME'").fetchone()[0]
        alert_latency = alert.timestamp() - surge_sent if alert else float("nan")
        report(args.n, bare, e2e, half, n2, lat, alert_latency)
    finally:
        if worker:
            worker.stop()
        kafka.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(n, bare, e2e, half, n2, lat, alert_latency) -> None:
    t = Table(title=f"finsent pipeline benchmark — {os.cpu_count()} cores, broker + Postgres + worker on this machine")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("bare runtime (in-process Scorer, batch 64)", f"{bare:,.0f} texts/s")
    t.add_row(f"end-to-end, full-rate replay of {n - 200:,} msgs", f"{e2e:,.0f} msgs/s")
    t.add_row("ratio end-to-end / bare", f"{e2e / bare:.2f}")
    t.add_row(f"paced replay at half max ({half:,.0f} msgs/s, {n2:,} msgs): produce→row p50", f"{np.percentile(lat, 50) * 1e3:,.0f} ms")
    t.add_row("produce→row p99", f"{np.percentile(lat, 99) * 1e3:,.0f} ms")
    t.add_row("alert latency: surge's first message → alert row", f"{alert_latency:.1f} s")
    console.print(t)


if __name__ == "__main__":
    main()
