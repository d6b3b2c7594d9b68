"""End-to-end pipeline benchmark (not a test): Kafka → worker(s) → Postgres, on this machine.

    python bench/pipeline.py                      # real CPU model: ratio to the bare model, latency
    python bench/pipeline.py --scorer null        # ceiling: a scorer that costs nothing (bench/null_worker.py)
    python bench/pipeline.py --workers 2          # scale-out: two workers in one consumer group
    python bench/pipeline.py --backlog 100000     # a backlog drained from a cold start: rate and peak RSS
    python bench/pipeline.py --profile            # py-spy the worker during the full-rate replay
    python bench/pipeline.py --texts-from ../shared/data --full-only   # real tweets and PhraseBank text
    python bench/pipeline.py --texts-from ../shared/data --quick --entities-ab 2   # the worker, entities on vs off

Phases (each on fresh topics and a fresh database, so one cannot help the next):
1. bare runtime: the worker's Scorer in this process on the same texts (texts/s, batch 64,
   the worker's threads: stream.app.scorer_threads) — the model alone; and bare `finsent predict`
   on the same texts as shipped (the number the target compares with; `--quick`: that one only;
   `--predict-as-worker`: also predict with the worker's thread scheme);
2. full-rate replay of N messages: msgs/s from the first send to the last row stored
   (`stored_at`, set by Postgres at insert), with the worker(s) already warm;
3. paced replay at half that rate with planted surges: produce→row latency p50/p99
   (`stored_at` − send time carried in `published_at`) and the alerts raised; with
   `--workers 2` the same paced feed also runs through one worker and the alert sets are compared;
4. `--backlog N`: N messages produced before the worker starts; drain rate (rows/s between the
   first and the last row stored) and the worker's peak resident memory.

Real text (`--texts-from DIR`, the shared training files: finance tweets and PhraseBank
sentences, bench/texts.py): the full-rate replay and the bare runtime score the same real texts.
The simulator's headlines are shorter and uniform, which flatters the ratio. `--full-only` stops
after phase 2.

Everything (broker, Postgres, worker(s), producer) shares this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.pg import migrate  # noqa: E402
from core.settings import Settings  # noqa: E402
from finsent.services import Kafka, Postgres, WorkerProcess, free_port, wait_for, worker_env  # noqa: E402
from stream.app import scorer_threads, usable_cpus  # noqa: E402
from stream.feed import produce  # noqa: E402
from stream.simulate import Surge, feed  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402

console = Console()
SURGES = ("QZXA", "QZXB", "QZXC")  # tickers absent from the background: new names that go bad at once


class NullWorker(WorkerProcess):
    """bench/null_worker.py instead of `finsent worker` (the ceiling run only)."""

    def start(self) -> NullWorker:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "null_worker.py")], env=self.env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self


class Run:
    """Fresh topics, database and consumer group; `workers` worker processes."""

    def __init__(self, kafka: Kafka, pg: Postgres, tmp: Path, null: bool, **overrides):
        self.kafka, self.pg, self.tmp, self.null = kafka, pg, tmp, null
        tag = uuid.uuid4().hex[:8]
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            c.execute(f"CREATE DATABASE b_{tag}")
        self.url = pg.url_for(f"b_{tag}")  # (a replace on pg.url named the server's default database: runs shared it)
        migrate(self.url)
        self.overrides = {**{f"topic_{t}": f"b{tag}.{t}" for t in ("news", "social", "scored", "alerts", "deadletter")},
                          "consumer_group": f"bench-{tag}", **overrides}
        self.settings = Settings(kafka_bootstrap=kafka.bootstrap, DATABASE_URL=self.url, **self.overrides)
        asyncio.run(ensure_topics(self.settings))
        self.workers: list[WorkerProcess] = []
        self.ports: list[int] = []

    def assigned(self) -> list[int]:
        import httpx

        out = []
        for port in self.ports:
            try:
                out.append(httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["assigned_partitions"])
            except (httpx.HTTPError, ValueError, KeyError):
                out.append(0)
        return out

    def wait_balanced(self, settle_s: float = 6.0) -> None:
        """Every worker holds partitions and the assignment has not moved for `settle_s`."""
        last, since = None, time.time()
        deadline = time.time() + 180
        while time.time() < deadline:
            now = self.assigned()
            if now != last:
                last, since = now, time.time()
            elif all(now) and time.time() - since >= settle_s:
                return
            time.sleep(0.5)
        raise TimeoutError(f"workers never settled: {last}")

    @property
    def dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def start_workers(self, n: int) -> None:
        for _ in range(n):
            port = free_port()
            self.ports.append(port)
            env = worker_env(self.kafka.bootstrap, self.url, web_port=port, **self.overrides)
            cls = NullWorker if self.null else WorkerProcess
            self.workers.append(cls(env, self.tmp / f"worker-{len(self.workers)}-{uuid.uuid4().hex[:4]}.log").start())

    def produce(self, events, rate: float = 0.0) -> None:
        asyncio.run(produce(self.kafka.bootstrap, events, self.settings.topic_news, self.settings.topic_social, rate))

    def sql(self, q: str):
        with psycopg.connect(self.dsn) as c:
            return c.execute(q).fetchall()

    def count(self) -> int:
        return self.sql("SELECT count(*) FROM scored_event")[0][0]

    def batches(self) -> tuple[float, float]:
        """(scoring batches, events in them) so far, summed over the workers' /metrics."""
        import httpx

        n = total = 0.0
        for port in self.ports:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith("finsent_batch_size_count"):
                    n += float(line.split()[-1])
                elif line.startswith("finsent_batch_size_sum"):
                    total += float(line.split()[-1])
        return n, total

    def wait_rows(self, n: int, timeout: float = 900) -> None:
        for w in self.workers:
            if not w.alive():
                raise RuntimeError(f"a worker exited:\n{w.log_tail()}")
        wait_for(lambda: self.count() >= n, timeout, interval=0.2, what=f"{n} rows")

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def bare_rate(texts: list[str], threads: int, workers: int = 1) -> float:
    from models.runtime import Scorer

    scorer = Scorer.from_artifact(max_batch=64, threads=threads, workers=workers)
    scorer.predict(texts[:64])
    t0 = time.perf_counter()
    for i in range(0, len(texts), 64):
        scorer.predict(texts[i: i + 64])
    return len(texts) / (time.perf_counter() - t0)


def predict_rate(texts: list[str], entities: bool = True, **scorer_args) -> float:
    """`finsent predict` on a file, as the CLI runs it (models.predict_file: the CLI's Scorer with
    ONNX Runtime's own thread count, 1,024-row chunks, and by default the entities: linking and
    the per-entity head, as the worker does); `entities=False`: `finsent predict --no-entities`;
    `scorer_args` (threads, workers): another thread scheme than the CLI's."""
    import orjson

    from models.entities import Directory, Linker
    from models.predict_file import predict_file
    from models.runtime import Scorer

    scorer = Scorer.from_artifact(**scorer_args)
    linker = Linker(Directory.configured(Settings().symbols_file)) if entities else False
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts))
        warm = Path(tmp) / "warm.jsonl"
        warm.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts[:64]))
        predict_file(scorer, warm, dst, linker=linker, min_relevance=Settings().entity_min_relevance)
        c0, t0 = time.process_time(), time.perf_counter()
        predict_file(scorer, src, dst, linker=linker, min_relevance=Settings().entity_min_relevance)
        rate = len(texts) / (time.perf_counter() - t0)
        PREDICT_CPU_MS.append((time.process_time() - c0) / len(texts) * 1e3)
        return rate


PREDICT_CPU_MS: list[float] = []  # CPU ms per text of each predict_rate run, in order


def cpu_of(kafka: Kafka, pg: Postgres, workers: list) -> dict[str, float]:
    """CPU seconds used so far (user + system) per part: the broker, PostgreSQL (postmaster and
    every backend), the worker process(es) and this process (the producer)."""
    import psutil

    def tree(pid: int, children: bool = True) -> float:
        try:
            p = psutil.Process(pid)
            procs = [p, *(p.children(recursive=True) if children else ())]
        except psutil.Error:
            return 0.0
        total = 0.0
        for q in procs:
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    postmaster = int((pg.dir / "postmaster.pid").read_text().split()[0])
    return {"Kafka broker": tree(int((kafka.dir / "kafka.pid").read_text())), "PostgreSQL": tree(postmaster),
            "worker": sum(tree(w.proc.pid) for w in workers), "producer (this process)": tree(os.getpid(), children=False)}


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def profile(pid: int, seconds: int, out: Path) -> threading.Thread:
    """py-spy record in raw (collapsed) form, summarised by profile_table()."""
    def go():
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        subprocess.run([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "50", "-f", "raw", "-o", str(out),
                        "--nonblocking"], capture_output=True)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


CATEGORIES = (  # the first match walking from the innermost frame outwards
    ("model (ONNX Runtime, tokenizer)", ("onnxruntime", "tokenizers", "models/runtime", "models/backends")),
    ("Postgres writes (asyncpg, COPY)", ("asyncpg", "core/events.py", "stream/sink.py")),
    ("decode + validate", ("stream/records.py", "pydantic", "orjson")),
    ("counting + detection", ("stream/pipeline.py", "stream/detection.py", "stream/detector.py", "stream/watermark.py")),
    ("Kafka client (aiokafka)", ("aiokafka", "kafka/")),
    ("Faust + mode (streams, tables, timers)", ("faust/", "mode/")),
    ("asyncio event loop", ("asyncio/",)),
)


def profile_table(raw: Path) -> list[tuple[str, float]]:
    totals: dict[str, int] = {}
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")[::-1]
        cat = "idle / other"
        for f in frames:
            hit = next((name for name, pats in CATEGORIES if any(p in f for p in pats)), None)
            if hit:
                cat = hit
                break
        if "select (selectors.py" in frames[0] or "epoll" in frames[0]:
            cat = "idle (waiting in epoll)"
        totals[cat] = totals.get(cat, 0) + int(n)
    total = sum(totals.values()) or 1
    return sorted(((k, v / total) for k, v in totals.items()), key=lambda kv: -kv[1])


def paced_feed(n: int, rate: float, seed: int, prefix: str) -> list[dict]:
    start = datetime.now(timezone.utc)
    evs = list(feed(n, seed, start=start, spacing_s=1 / rate, prefix=prefix))
    for j, t in enumerate(SURGES):  # three surges of 30 negative items, spread over the feed
        s = int(n * (0.25 + 0.2 * j))  # the last one 14 s before the end: its slices are final by then
        planted = list(feed(30, seed + 10 + j, Surge("ACME", 0, 30), start=start, prefix=f"{prefix}-surge{j}"))
        for e in planted:
            e["text"] = e["text"].replace("Acme Corp", f"{t.title()} Inc").replace("ACME", t)
            if "tickers" in e:
                e["tickers"] = [t]
        evs[s:s] = planted
    for i, e in enumerate(evs):  # published_at = planned send time: latency = stored_at − published_at
        e["published_at"] = datetime.fromtimestamp(start.timestamp() + i / rate, timezone.utc).isoformat()
    return evs


def alerts(run: Run) -> list[tuple]:
    return sorted(run.sql("SELECT key_type, key, count(*) FROM alert GROUP BY 1, 2"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000, help="messages in the full-rate replay")
    ap.add_argument("--scorer", choices=("model", "null"), default="model")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--backlog", type=int, default=0, help="also drain a backlog of this many messages")
    ap.add_argument("--profile", action="store_true", help="py-spy the (first) worker during the full-rate replay")
    ap.add_argument("--profile-out", type=Path, help="also keep py-spy's raw (collapsed) stacks here")
    ap.add_argument("--paced-s", type=float, default=40.0, help="seconds of paced traffic")
    ap.add_argument("--texts-from", type=Path, help="real texts from these training files (bench/texts.py)")
    ap.add_argument("--full-only", action="store_true", help="stop after the full-rate replay")
    ap.add_argument("--quick", action="store_true", help="of the bare runs, only `finsent predict` as shipped")
    ap.add_argument("--predict-as-worker", action="store_true",
                    help="also time `finsent predict` with the worker's thread scheme (stream.app.scorer_threads)")
    ap.add_argument("--entities-ab", type=int, default=0, metavar="K",
                    help="instead of phases 2-4: the full-rate replay K times with entities on and K times off")
    args = ap.parse_args()
    null = args.scorer == "null"
    tmp = Path(tempfile.mkdtemp(prefix="finsent-bench-"))
    kafka, pg, runs, rows = Kafka(tmp / "kafka"), Postgres(tmp / "pg"), [], []
    fast = {"slice_s": 2, "window_s": 20, "detector_warmup_s": 20, "lateness_s": 5}  # minutes, not hours, of traffic
    try:
        kafka.start()
        pg.start()
        threads, workers = scorer_threads(Settings())  # as the worker chooses them
        full = list(feed(args.n + 500, 1, start=datetime.now(timezone.utc), spacing_s=0.001, prefix="full"))
        if args.texts_from:
            from bench.texts import realistic_mix

            real = realistic_mix(args.texts_from, len(full))
            for e, text in zip(full, real):
                e["text"] = text
                e.pop("tickers", None)  # the worker finds the cashtags in the text
            rows.append(("texts", f"real: {len(set(real)):,} distinct tweets/PhraseBank sentences, "
                                  f"{np.mean([len(t) for t in real]):.0f} chars on average"))
        scheme = f"{threads} ONNX thread(s) per run, {workers} run(s) at once"
        bare = cli_model = cli_worker = None
        if not null:
            sample = [e["text"] for e in full[:3000]]
            if not args.quick:
                bare = bare_rate(sample, threads, workers)
                rows.append((f"bare runtime (in-process Scorer, batch 64, {scheme})", f"{bare:,.0f} texts/s"))
            cli = predict_rate(sample)
            rows.append(("bare `finsent predict` as shipped (model + entities, 1,024-row chunks, ORT's default "
                         "threads)", f"{cli:,.0f} texts/s, {PREDICT_CPU_MS[-1]:.2f} ms CPU per text"))
            if args.predict_as_worker:
                cli_worker = predict_rate(sample, threads=threads, workers=workers)
                rows.append((f"bare `finsent predict`, the worker's threads ({scheme})",
                             f"{cli_worker:,.0f} texts/s, {PREDICT_CPU_MS[-1]:.2f} ms CPU per text"))
            if not args.quick:
                cli_model = predict_rate(sample, entities=False)
                rows.append(("bare `finsent predict --no-entities` (the model alone)", f"{cli_model:,.0f} texts/s"))

        # 2. full rate
        if args.entities_ab:
            entities_ab(kafka, pg, tmp, runs, full, fast, args, rows)
            report(args, rows, [])
            return
        run = Run(kafka, pg, tmp, null, **fast)
        runs.append(run)
        e2e, (t0, t1), (cpu0, cpu1), (b0, b1), spy = full_rate(run, full, args.workers,
                                                                 tmp / "spy.txt" if args.profile else None)
        budget = usable_cpus() * (t1 - t0)
        for part in cpu0:
            used = cpu1[part] - cpu0[part]
            rows.append((f"CPU during the replay: {part}", f"{used:,.1f} s ({used / budget:.0%} of the machine)"))
        rows.append((f"end-to-end, full-rate replay of {args.n:,} msgs, {args.workers} worker(s)", f"{e2e:,.0f} msgs/s"))
        if b1[0] > b0[0]:
            nb = b1[0] - b0[0]
            rows.append(("scoring batches in the replay, mean size; PostgreSQL CPU per batch",
                         f"{nb:,.0f}, {(b1[1] - b0[1]) / nb:,.1f} events; "
                         f"{(cpu1['PostgreSQL'] - cpu0['PostgreSQL']) / nb * 1e3:,.1f} ms"))
        if not null:
            rows.append((f"worker CPU per message (ms), {scheme}",
                         f"{(cpu1['worker'] - cpu0['worker']) / args.n * 1e3:.2f}"))
            if bare:
                rows.append(("ratio end-to-end / bare runtime (model alone, the worker's threads)", f"{e2e / bare:.2f}"))
            rows.append(("ratio end-to-end / bare `finsent predict` (target ≥ 0.8 on real text)", f"{e2e / cli:.2f}"))
            if cli_worker:
                rows.append(("ratio end-to-end / bare `finsent predict` with the worker's threads", f"{e2e / cli_worker:.2f}"))
            if cli_model:
                rows.append(("ratio end-to-end / bare `finsent predict --no-entities`", f"{e2e / cli_model:.2f}"))
        rows.append(("load average (1 min) at the end of the replay", f"{os.getloadavg()[0]:.1f}"))
        if spy:
            spy.join(60)
        run.stop()
        if args.profile and args.profile_out:
            shutil.copy(tmp / "spy.txt", args.profile_out)
        if args.full_only:
            report(args, rows, profile_table(tmp / "spy.txt") if args.profile else [])
            return

        # 3. paced at half max, with surges; alert set compared with one worker when scaling out
        half = e2e / 2
        alert_sets = {}
        for n_workers in sorted({args.workers, 1} if args.workers > 1 else {1}, reverse=True):
            run = Run(kafka, pg, tmp, null, **fast)
            runs.append(run)
            run.start_workers(n_workers)
            # warm-up: 36 s of event time ending now, so that every key is past the detector's warm-up
            # when the paced feed starts (a cold key alerts against the prior, at the mercy of timing)
            warm = list(feed(720, 5, start=datetime.now(timezone.utc) - timedelta(seconds=36), spacing_s=0.05,
                             prefix="warm"))
            run.produce(warm)
            run.wait_rows(len(warm), 180)
            run.wait_balanced()
            paced = paced_feed(int(half * args.paced_s), half, 2, "paced")  # published_at = planned send time
            run.produce(paced, rate=half)
            run.wait_rows(len(warm) + len(paced))
            time.sleep(4)
            alert_sets[n_workers] = alerts(run)
            if n_workers == args.workers:
                lat = np.array([float(r[0]) for r in run.sql(
                    "SELECT extract(epoch FROM stored_at - published_at) FROM scored_event WHERE id LIKE 'paced-%'")])
                rows.append((f"paced at half max ({half:,.0f} msgs/s, {len(paced):,} msgs): produce→row p50",
                             f"{np.percentile(lat, 50) * 1e3:,.0f} ms"))
                rows.append(("produce→row p99 (target ≤ 1 s)", f"{np.percentile(lat, 99) * 1e3:,.0f} ms"))
                keys = [k for _, k, _ in alert_sets[n_workers]]
                rows.append((f"alerts on the {len(SURGES)} planted surges", ", ".join(f"{k}×{c}" for _, k, c in
                                                                                      alert_sets[n_workers]) or "none"))
                rows.append(("planted surges alerted", f"{sum(t in keys for t in SURGES)}/{len(SURGES)}"))
            run.stop()
        if args.workers > 1:
            same = alert_sets[args.workers] == alert_sets[1]
            rows.append((f"alert set, {args.workers} workers == 1 worker", "yes" if same else
                         f"NO: {alert_sets[args.workers]} vs {alert_sets[1]}"))

        # 4. backlog from a cold start
        if args.backlog:
            run = Run(kafka, pg, tmp, null, **fast)
            runs.append(run)
            backlog = list(feed(args.backlog, 3, start=datetime.now(timezone.utc), spacing_s=0.001, prefix="bl"))
            run.produce(backlog)
            del backlog
            run.start_workers(1)  # from a cold start (two would add a rebalance to the drain time)
            peak, deadline = 0.0, time.time() + 1800
            while run.count() < args.backlog and time.time() < deadline:
                peak = max([peak] + [rss_mib(w.proc.pid) for w in run.workers])
                if not all(w.alive() for w in run.workers):
                    raise RuntimeError(run.workers[0].log_tail())
                time.sleep(0.5)
            (first, last, p10, p90, n), = run.sql(
                "SELECT min(stored_at), max(stored_at), percentile_disc(0.1) WITHIN GROUP (ORDER BY stored_at), "
                "percentile_disc(0.9) WITHIN GROUP (ORDER BY stored_at), count(*) FROM scored_event")
            rows.append((f"backlog of {args.backlog:,} msgs drained (first → last row)",
                         f"{(n - 1) / (last - first).total_seconds():,.0f} msgs/s"))
            rows.append(("backlog drain, steady part (10th → 90th percentile row)",
                         f"{0.8 * n / max((p90 - p10).total_seconds(), 1e-3):,.0f} msgs/s"))
            rows.append(("worker peak RSS during the backlog", f"{peak:,.0f} MiB"))
            run.stop()
        if args.profile and args.profile_out:
            shutil.copy(tmp / "spy.txt", args.profile_out)
        report(args, rows, profile_table(tmp / "spy.txt") if args.profile else [])
    finally:
        for r in runs:
            r.stop()
        kafka.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def full_rate(run: Run, full: list[dict], workers: int, spy_to: Path | None = None):
    """Phase 2 on `run`: warm up on the first 500 messages, then replay the rest at full rate:
    (msgs/s from the first send to the last row stored, (t0, t1), (cpu0, cpu1), (batches0, batches1),
    the py-spy thread recording the first worker into `spy_to`, or None)."""
    run.start_workers(workers)
    run.produce(full[:500])  # warm-up: model load, group join
    run.wait_rows(500, 180)
    run.wait_balanced()
    spy = profile(run.workers[0].proc.pid, 25, spy_to) if spy_to else None
    cpu0, b0 = cpu_of(run.kafka, run.pg, run.workers), run.batches()
    t0 = time.time()
    run.produce(full[500:])
    run.wait_rows(len(full))
    cpu1, t1, b1 = cpu_of(run.kafka, run.pg, run.workers), time.time(), run.batches()
    last = run.sql("SELECT max(stored_at) FROM scored_event")[0][0].timestamp()
    return (len(full) - 500) / (last - t0), (t0, t1), (cpu0, cpu1), (b0, b1), spy


def entities_ab(kafka: Kafka, pg: Postgres, tmp: Path, runs: list, full: list[dict], fast: dict, args, rows) -> None:
    """`--entities-ab K`: the full-rate replay K times with entities on and K times off
    (FINSENT_ENTITIES=false: no linking, no per-entity head; items key on their tags, else cashtags),
    alternated on fresh topics and databases; the worker's end-to-end rate and CPU per message."""
    got: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for k in range(args.entities_ab):
        for on in ((True, False) if k % 2 == 0 else (False, True)):
            run = Run(kafka, pg, tmp, False, entities=on, **fast)
            runs.append(run)
            e2e, _, (cpu0, cpu1), _, _ = full_rate(run, full, args.workers)
            n_ent = run.sql("SELECT count(*) FROM event_entity")[0][0]
            if on != (n_ent > 0):
                raise RuntimeError(f"entities={on} but {n_ent} entity rows were stored")
            ms = (cpu1["worker"] - cpu0["worker"]) / args.n * 1e3
            got[on].append((e2e, ms))
            rows.append((f"run {k + 1}, entities {'on' if on else 'off'}: msgs/s, worker CPU ms per message",
                         f"{e2e:,.0f}, {ms:.2f} ({n_ent:,} entity rows)"))
            run.stop()
    med = {on: (float(np.median([r for r, _ in v])), float(np.median([c for _, c in v]))) for on, v in got.items()}
    rows.append(("median msgs/s, on / off", f"{med[True][0]:,.0f} / {med[False][0]:,.0f} = {med[True][0] / med[False][0]:.3f}"))
    rows.append(("median worker CPU ms per message, on / off (target: on within 5 % of off)",
                 f"{med[True][1]:.2f} / {med[False][1]:.2f} = {med[True][1] / med[False][1]:.3f}"))
    best = {on: max(r for r, _ in v) for on, v in got.items()}
    cpu = {on: min(c for _, c in v) for on, v in got.items()}
    rows.append(("best msgs/s: entities on / off", f"{best[True]:,.0f} / {best[False]:,.0f} = {best[True] / best[False]:.3f}"))
    rows.append(("least worker CPU per message: off / on",
                 f"{cpu[False]:.2f} / {cpu[True]:.2f} ms = {cpu[False] / cpu[True]:.3f}"))
    rows.append(("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}"))


def report(args, rows, prof) -> None:
    title = (f"finsent pipeline benchmark — scorer {args.scorer}, {args.workers} worker(s), {os.cpu_count()} cores "
             "shared by broker, Postgres, worker(s) and producer")
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    if prof:
        p = Table(title="where the first worker's time went during the full-rate replay (py-spy, 50 Hz)")
        p.add_column("category")
        p.add_column("share of samples", justify="right")
        for k, v in prof:
            p.add_row(k, f"{v:.0%}")
        console.print(p)


if __name__ == "__main__":
    main()
