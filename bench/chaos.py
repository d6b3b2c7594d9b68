"""A chaos run: a real-sized backlog plus live traffic with planted surges, while the worker is
killed -9, a second worker joins and leaves, the broker is paused (SIGSTOP) and restarted,
Postgres is restarted and made read-only for a while, the model is hot-swapped, and poison
messages of every kind arrive. Then it checks what a risk desk relies on:

- every good message stored exactly once, none lost;
- dead letters equal the bad messages, each with its reason;
- the alert set equals stream.offline replayed over the stored rows in event-time order;
- no alert left open on a key that has gone quiet;
- /health was never 200 while storing stalled longer than the stall limit (seen from outside:
  good messages pending and the stored count not moving).

    python bench/chaos.py                     # one broker, about 6 minutes on 2 cores
    python bench/chaos.py --cluster           # three KRaft brokers (replication 3, min ISR 2),
                                              # partition leaders killed -9 mid-stream
    python bench/chaos.py --seed 7 --live-s 300 --backlog 24000

The producer is not the project's: keys are source names (so some input partitions stay empty),
lz4 when the codec is installed, and the news topic gets most of the backlog (the two input
topics drain at different speeds). tests/integration/test_chaos.py runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.texts import realistic_mix  # noqa: E402
from core.pg import migrate  # noqa: E402
from core.settings import Settings  # noqa: E402
from finsent.services import KAFKA_SH, Kafka, Postgres, WorkerProcess, free_port, wait_for, worker_env  # noqa: E402
from models.runtime import DEFAULT_ARTIFACT  # noqa: E402
from stream.app import detector_config  # noqa: E402
from stream.offline import STORED_EVENTS_SQL, replay, stored_event  # noqa: E402
from stream.simulate import COMPANIES, NEGATIVE, NEUTRAL, POSITIVE, surge_headline  # noqa: E402

FAULTS = ("kill_worker", "second_worker", "broker_pause", "broker_restart", "pg_restart", "pg_readonly", "hot_swap")
NEWS, SOCIAL = ("wire-a", "wire-b", "finblog"), ("social-x", "forum")
QUIET = ["ACME", "BA", "PFE", "KO", "DIS", "GS"]  # surges land on these, one each
BUSY = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "JPM"]
HEADLINES = [t for t in NEGATIVE if "{co}" in t]
# Minutes, not hours: the detector of the integration tests, with a short cool-down
DETECTOR = {"slice_s": 5, "window_s": 30, "detector_warmup_s": 60, "detector_cooldown_s": 60}


@dataclass
class Config:
    seed: int = 1
    backlog: int = 6000  # background items produced before the worker starts
    backlog_hours: float = 1.0  # the event-time span they cover, ending at the start of the run
    live_s: float = 240.0  # live traffic, faults injected in it
    live_rate: float = 20.0  # msgs/s
    calm_s: float = 75.0  # calm traffic after the live phase, so that every alert can resolve
    calm_grace_s: float = 30.0  # at most this much more calm traffic while an alert is still open
    surges: int = 3  # in the live phase (one more is planted in the backlog)
    faults: tuple[str, ...] = FAULTS
    cluster: bool = False
    stall_s: float = 20.0  # the worker's FINSENT_STALL_S; /health must say 503 past it
    data_dir: Path | None = ROOT.parent / "shared" / "data"
    workdir: Path | None = None
    session_timeout_s: float | None = None  # the workers' FINSENT_SESSION_TIMEOUT_S (None: the default)
    fault_times: dict[str, float] | None = None  # fault -> seconds into the live phase (the rest at random)


@dataclass
class Report:
    config: Config
    produced_good: int = 0
    stored: int = 0
    stored_distinct: int = 0
    missing: list[str] = field(default_factory=list)
    bad_sent: dict[str, int] = field(default_factory=dict)  # kind -> count
    dead_letters: int = 0
    dead_reasons: dict[str, int] = field(default_factory=dict)
    dead_without_reason: int = 0
    alerts: list[tuple[str, float]] = field(default_factory=list)
    offline: list[tuple[str, float]] = field(default_factory=list)
    offline_late: int = 0
    planted: list[str] = field(default_factory=list)
    open_at_end: list[str] = field(default_factory=list)  # open, with calm_s of calm traffic after it opened
    opened_late: list[str] = field(default_factory=list)  # open, opened within the last calm_s of traffic
    calm_extra_s: float = 0.0  # calm traffic past calm_s because an alert was still open
    faults: list[tuple[float, str, str]] = field(default_factory=list)  # (t, fault, detail)
    health_lies: list[tuple[float, float]] = field(default_factory=list)  # (t, stalled for) while /health 200
    longest_stall_s: float = 0.0
    worker_exits: list[str] = field(default_factory=list)  # stops the harness restarted (not the kill -9s)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not any(d.startswith("FAILED") for _, _, d in self.faults) and not self.missing and self.stored == self.stored_distinct == self.produced_good
                and self.dead_letters == sum(self.bad_sent.values()) and not self.dead_without_reason
                and self.alerts == self.offline and not self.open_at_end and not self.health_lies
                and all(f"ticker:{t}" in {k for k, _ in self.alerts} for t in self.planted))


def item(rng: random.Random, ts: datetime, tag: str, n: int, text: str, tickers: list[str] | None = None,
         source: str | None = None) -> dict:
    src = source or rng.choice(NEWS + SOCIAL)
    return {"id": f"{tag}-{n}", "source": src, "text": text, "published_at": ts.isoformat(),
            **({"tickers": tickers} if tickers and src in NEWS else {})}


def headline(rng: random.Random, templates: list[str], ticker: str) -> str:
    return rng.choice(templates).format(co=COMPANIES[ticker], t=ticker, pct=rng.randint(2, 19), n=rng.randint(1, 20))


def background(rng: random.Random, ts: datetime, n: int, tag: str, texts: list[str]) -> dict:
    """Real text about nothing in particular (topic keys), or a headline about a ticker."""
    r = rng.random()
    if r < 0.5:
        return item(rng, ts, tag, n, rng.choice(texts), source=rng.choice(NEWS) if rng.random() < 0.8 else None)
    ticker = rng.choice(BUSY) if r < 0.9 else rng.choice(QUIET)
    templates = rng.choices((NEGATIVE, NEUTRAL, POSITIVE), weights=(2, 5, 3))[0]
    templates = [t for t in templates if "{co}" in t] or NEUTRAL[:1]
    return item(rng, ts, tag, n, headline(rng, templates, ticker), [ticker], source=rng.choice(NEWS))


def surge(rng: random.Random, start: datetime, ticker: str, tag: str, count: int = 30, span_s: float = 10) -> list[dict]:
    """`count` different pieces of bad news about `ticker` (copies of one story would barely count: issue 20)."""
    return [item(rng, start + timedelta(seconds=rng.uniform(0, span_s)), f"{tag}-surge-{ticker}", i,
                 (headline(rng, HEADLINES, ticker), surge_headline(i, ticker, rng.randint(2, 19)))[1], [ticker],
                 source=rng.choice(NEWS)) for i in range(count)]


def poison(rng: random.Random, max_chars: int, now: datetime) -> list[tuple[str, bytes]]:
    """(kind, raw bytes) of every kind of bad message the worker must dead-letter, not choke on."""
    ok = {"source": "wire-a", "text": "Shares fell after the company cut its outlook.", "published_at": now.isoformat()}
    tag = uuid.uuid4().hex[:8]
    j = lambda **kw: orjson.dumps({"id": f"bad-{tag}-{rng.randrange(10**9)}", **ok, **kw})  # noqa: E731
    return [
        ("not_json", b"{not json " + tag.encode()),
        ("not_object", b"[1, 2, 3]"),
        ("invalid_utf8", b'{"id": "u-' + tag.encode() + b'", "source": "x", "text": "\xff\xfe", "published_at": "2026-01-01T00:00:00Z"}'),
        ("missing_text", orjson.dumps({"id": f"m-{tag}", "source": "wire-a", "published_at": now.isoformat()})),
        ("wrong_type", j(text=5)),
        ("year_1_date", j(published_at="0001-01-01T00:00:00+01:00")),
        ("year_9999_date", j(published_at="9999-12-31T23:59:59-14:00")),
        ("far_future", j(published_at=(now + timedelta(days=2)).isoformat())),
        ("unknown_field", j(**{f"trace_{uuid.uuid4().hex}": "x"})),
        ("oversize_text", j(text="x" * (max_chars + 1))),
        ("over_producer_limit", j(text="y" * 1_030_000)),  # its dead letter exceeds the 1,000,000-byte default
        ("empty", b""),
    ]


class Services:
    """Kafka (one broker, or a KRaft cluster of three) and Postgres in `root`, with the faults."""

    def __init__(self, root: Path, cluster: bool):
        self.root, self.cluster = root, cluster
        self.kdir = root / "kafka"
        base = root / "pg"
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        self.pg = Postgres(base / "data", database="postgres")

    def start(self) -> Services:
        if self.cluster:
            subprocess.run([str(KAFKA_SH), "cluster", str(self.kdir), "3"], check=True, capture_output=True, timeout=300)
            self.bootstrap = (self.kdir / "bootstrap").read_text().strip()
        else:
            self.kafka = Kafka(self.kdir).start()
            self.bootstrap = self.kafka.bootstrap
        self.pg.start()
        return self

    def stop(self) -> None:
        subprocess.run([str(KAFKA_SH), "cluster-stop" if self.cluster else "stop", str(self.kdir)],
                       capture_output=True, timeout=120)
        self.stop_pg()

    def broker_pids(self) -> list[int]:
        dirs = sorted(self.kdir.glob("node*")) if self.cluster else [self.kdir]
        return [int((d / "kafka.pid").read_text()) for d in dirs if (d / "kafka.pid").exists()]

    def pause_broker(self, seconds: float) -> str:
        pids = self.broker_pids()
        pid = pids[0] if not self.cluster else random.choice(pids)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(pid, signal.SIGCONT)
        return f"pid {pid} stopped {seconds:.0f} s"

    def restart_broker(self, topic: str, down_s: float) -> str:
        if not self.cluster:
            self.kafka.stop()
            time.sleep(down_s)
            self.kafka.start()
            return f"down {down_s:.0f} s"
        node = asyncio.run(leader_of(self.bootstrap, topic, 0))  # the leader of a partition in use, killed -9
        d = self.kdir / f"node{node}"
        os.kill(int((d / "kafka.pid").read_text()), signal.SIGKILL)
        time.sleep(down_s)
        (d / "kafka.pid").unlink(missing_ok=True)
        subprocess.run([str(KAFKA_SH), "start", str(d)], check=True, capture_output=True, timeout=180)
        return f"leader node {node} of {topic}/0 killed -9, back after {down_s:.0f} s"

    def stop_pg(self) -> None:
        """pg_ctl stop, and when it fails (it did once under load: exit 1), SIGTERM/SIGKILL to the
        postmaster of postmaster.pid: a fault that cannot be undone would end the run, not test it."""
        import logging
        import subprocess as sp

        logging.getLogger("pgserver").setLevel(logging.CRITICAL)
        try:
            self.pg.stop()
            return
        except sp.CalledProcessError as exc:
            print(f"pg_ctl stop failed ({exc.returncode}); stopping the postmaster by its pid", file=sys.stderr)
        pidfile = self.pg.dir / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and pidfile.exists():
                    time.sleep(0.2)
                if not pidfile.exists():
                    break
        self.pg.server = None

    def restart_pg(self, down_s: float) -> str:
        self.stop_pg()
        time.sleep(down_s)
        self.pg.start()
        return f"down {down_s:.0f} s"

    def read_only(self, seconds: float) -> str:
        def system(on: bool) -> None:
            with psycopg.connect(self.pg.dsn, autocommit=True, connect_timeout=5) as c:
                c.execute("SET default_transaction_read_only = off")
                c.execute(f"ALTER SYSTEM SET default_transaction_read_only = {'on' if on else 'off'}")
                c.execute("SELECT pg_reload_conf()")
                if on:  # sessions already open keep their setting: end them, as a failover would
                    c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
        system(True)
        time.sleep(seconds)
        system(False)
        return f"read-only {seconds:.0f} s"


async def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (desc,) = await admin.describe_topics([topic])
        return next(p["leader"] for p in desc["partitions"] if p["partition"] == partition)
    finally:
        await admin.close()


class Producer:
    """Another client than the project's: keys are source names; a thread with its own loop."""

    def __init__(self, bootstrap: str, news: str, social: str):
        self.bootstrap, self.news, self.social = bootstrap, news, social
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.producer = self._call(self._start())

    def _call(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self):
        from aiokafka import AIOKafkaProducer

        try:
            import cramjam  # noqa: F401  (aiokafka's codecs)
            codec = "lz4"
        except ImportError:
            codec = "gzip"
        p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=10,
                             compression_type=codec, max_request_size=1_100_000, request_timeout_ms=60_000)
        await p.start()
        return p

    def send(self, events: list[dict], raw: list[tuple[str, bytes]] = ()) -> None:
        async def go():
            for e in events:
                topic = self.social if e["source"] in SOCIAL else self.news
                await self.producer.send(topic, orjson.dumps(e), key=e["source"].encode())
            for _, value in raw:
                await self.producer.send(self.news, value, key=b"poison")
            await self.producer.flush()
        self._call(go())

    def close(self) -> None:
        self._call(self.producer.stop(), 60)
        self.loop.call_soon_threadsafe(self.loop.stop)


class Watch(threading.Thread):
    """Every second: each worker's /health and the stored count. A stall is good messages
    pending while the count does not move; /health 200 after stall_s + 5 s of it is a lie."""

    def __init__(self, dsn: str, ports: list[int], stall_s: float, produced):
        super().__init__(daemon=True)
        self.dsn, self.ports, self.stall_s, self.produced = dsn, ports, stall_s, produced
        self.stop_flag, self.lies, self.longest = threading.Event(), [], 0.0
        self.t0 = time.monotonic()

    def stored(self) -> int | None:
        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as c:
                return c.execute("SELECT count(*) FROM scored_event").fetchone()[0]
        except psycopg.Error:
            return None

    def run(self) -> None:
        last, since = -1, time.monotonic()
        while not self.stop_flag.wait(1.0):
            n, now = self.stored(), time.monotonic()
            if n is not None and n != last:
                last, since = n, now
            pending = n is None or n < self.produced()
            stalled = now - since if pending else 0.0
            self.longest = max(self.longest, stalled)
            if stalled > self.stall_s + 5:
                for port in list(self.ports):
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                            # a 200 that comes with the write ending the stall (rows stored between the
                            # count and the call) is not a lie: the rows are counted again after it
                            if (again := self.stored()) is not None and again != last:
                                last, since = again, time.monotonic()
                                break
                            self.lies.append((round(now - self.t0, 1), round(stalled, 1)))
                    except httpx.HTTPError:
                        pass


def stored_events(dsn: str) -> list:
    with psycopg.connect(dsn) as c:
        return [stored_event(r) for r in c.execute(STORED_EVENTS_SQL)]


async def read_all(bootstrap: str, topic: str, idle_s: float = 5.0) -> list:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                         fetch_max_bytes=4 << 20, max_partition_fetch_bytes=4 << 20)
    await c.start()
    out, last = [], time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            got = await c.getmany(timeout_ms=500)
            for msgs in got.values():
                out += msgs
                last = time.monotonic()
    finally:
        await c.stop()
    return out


def models_dir(root: Path) -> Path:
    """v1 (the shipped artifact) and v2 (the same weights under another version); current → v1."""
    models = root / "models"
    (models / "v2").mkdir(parents=True, exist_ok=True)
    if not (models / "v1").exists():
        (models / "v1").symlink_to(DEFAULT_ARTIFACT)
    for f in DEFAULT_ARTIFACT.iterdir():
        if f.name != "finsent.json" and not (models / "v2" / f.name).exists():
            (models / "v2" / f.name).symlink_to(f)
    meta = json.loads((DEFAULT_ARTIFACT / "finsent.json").read_text())
    (models / "v2" / "finsent.json").write_text(json.dumps({**meta, "version": f"{meta['version'][:40]}-chaos"}))
    (models / "current").write_text("v1")
    return models


def run(cfg: Config, log=print) -> Report:
    t_start = time.monotonic()
    rng = random.Random(cfg.seed)
    root = Path(cfg.workdir or tempfile.mkdtemp(prefix="finsent-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # run as root, pgserver runs PostgreSQL as its own user, which must reach pg/
    report = Report(cfg)
    svc = Services(root, cfg.cluster).start()
    log(f"services up: kafka {svc.bootstrap}, postgres {svc.pg.dsn}")
    workers: list[WorkerProcess] = []
    producer = watch = None
    try:
        with psycopg.connect(svc.pg.dsn, autocommit=True) as c:
            c.execute("CREATE DATABASE chaos")
        url = svc.pg.url_for("chaos")
        migrate(url)
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        models = models_dir(root)
        tag = uuid.uuid4().hex[:6]
        env = {**{f"topic_{t}": f"c{tag}.{t}" for t in ("news", "social", "scored", "alerts", "deadletter")},
               "consumer_group": f"chaos{tag}", "model_dir": str(models), "model_poll_s": 1.0,
               "stall_s": cfg.stall_s, **DETECTOR, **({"replication": 3} if cfg.cluster else {}),
               **({"session_timeout_s": cfg.session_timeout_s} if cfg.session_timeout_s else {})}
        settings = Settings(kafka_bootstrap=svc.bootstrap, DATABASE_URL=url, **env)
        from stream.topics import ensure_topics

        asyncio.run(ensure_topics(settings))
        producer = Producer(svc.bootstrap, settings.topic_news, settings.topic_social)
        texts = realistic_mix(cfg.data_dir, 4000, cfg.seed)
        good: set[str] = set()
        sent = [0]

        def send(events: list[dict], raw=()) -> None:
            producer.send(events, raw)
            good.update(f"{e['source']}/{e['id']}" for e in events)
            sent[0] = len(good)
            for kind, _ in raw:
                report.bad_sent[kind] = report.bad_sent.get(kind, 0) + 1

        # the backlog: an hour of background and one planted surge, all before the worker starts
        now = datetime.now(timezone.utc).replace(microsecond=0)
        t0 = now - timedelta(hours=cfg.backlog_hours)
        span = cfg.backlog_hours * 3600
        backlog = [background(rng, t0 + timedelta(seconds=span * i / cfg.backlog), f"bl{tag}", i, texts)
                   for i in range(cfg.backlog)]
        backlog += surge(rng, t0 + timedelta(seconds=span * 0.6), QUIET[0], f"bl{tag}")
        report.planted.append(QUIET[0])
        send(sorted(backlog, key=lambda e: e["published_at"]), poison(rng, settings.max_text_chars, now))
        log(f"backlog produced: {len(backlog)} items, {sum(report.bad_sent.values())} poison")

        port = free_port()
        ports = [port]

        main_started = [time.monotonic()]

        def start_worker(p: int) -> WorkerProcess:
            main_started[0] = time.monotonic()
            w = WorkerProcess(worker_env(svc.bootstrap, url, **{**env, "web_port": p}),
                              root / f"worker-{len(workers)}.log").start()
            workers.append(w)
            return w

        main = start_worker(port)
        watch = Watch(dsn, ports, cfg.stall_s, lambda: sent[0])
        watch.start()

        # live traffic with surges and poison; faults at random moments
        t_live = time.monotonic()
        at = cfg.fault_times or {}
        fault_at = sorted((at[f] if f in at else rng.uniform(0.1, 0.8) * cfg.live_s, f) for f in cfg.faults)
        surge_at = [cfg.live_s * (i + 1) / (cfg.surges + 1) for i in range(cfg.surges)]
        poison_at = [rng.uniform(0.05, 0.9) * cfg.live_s for _ in range(3)]
        n = 0

        restarting = threading.Event()  # set while a fault takes the main worker down on purpose

        def supervise() -> None:
            """As compose's restart policy: a worker that stopped (exit 70: it could not go on) starts again."""
            nonlocal main
            if not restarting.is_set() and not main.alive() and time.monotonic() - main_started[0] > 5:
                report.worker_exits.append(f"{time.monotonic() - t_live:.0f} s: rc {main.proc.returncode}")
                log(f"  worker exited with {main.proc.returncode}; restarted")
                main = start_worker(port)

        locks = {"pg": threading.Lock(), "broker": threading.Lock(), "worker": threading.Lock()}
        resource = {"pg_restart": "pg", "pg_readonly": "pg", "broker_pause": "broker", "broker_restart": "broker"}

        def fault(name: str) -> None:
            with locks[resource.get(name, "worker")]:  # one fault at a time on each resource
                try:
                    inject(name)
                except Exception as exc:  # noqa: BLE001 - a fault that could not be injected (or undone) is reported
                    t = round(time.monotonic() - t_live, 1)
                    report.faults.append((t, name, f"FAILED: {type(exc).__name__}: {exc}"[:300]))
                    log(f"  {t:6.1f} s  {name} FAILED: {exc!r}"[:300])

        def inject(name: str) -> None:
            nonlocal main
            t = round(time.monotonic() - t_live, 1)
            if name == "kill_worker":
                restarting.set()
                main.kill9()
                time.sleep(2)
                main = start_worker(port)
                restarting.clear()
                detail = "worker killed -9, restarted after 2 s"
            elif name == "second_worker":
                p2 = free_port()
                ports.append(p2)
                w2 = start_worker(p2)
                time.sleep(min(30, cfg.live_s / 6))
                w2.stop()
                ports.remove(p2)
                detail = "joined, left after 30 s"
            elif name == "broker_pause":
                detail = svc.pause_broker(10)
            elif name == "broker_restart":
                detail = svc.restart_broker(settings.topic_news, 8)
            elif name == "pg_restart":
                detail = svc.restart_pg(5)
            elif name == "pg_readonly":
                detail = svc.read_only(15)
            elif name == "hot_swap":
                (models / "current").write_text("v2")
                detail = "current -> v2"
            else:
                raise ValueError(name)
            report.faults.append((t, name, detail))
            log(f"  {t:6.1f} s  {name}: {detail}")

        def alerts_open() -> bool:
            try:
                with psycopg.connect(dsn, connect_timeout=2) as c:
                    return c.execute("SELECT count(*) FROM alert WHERE resolved_at IS NULL").fetchone()[0] > 0
            except psycopg.Error:
                return True  # not known: keep the calm traffic going (bounded by calm_grace_s)

        threads: list[threading.Thread] = []
        # the calm phase lasts calm_s, and up to calm_grace_s more while an alert is still open: a
        # resolve needs a final window back to normal, which the faults' stalls can push back
        while (elapsed := time.monotonic() - t_live) < cfg.live_s + cfg.calm_s + cfg.calm_grace_s and (
                elapsed < cfg.live_s + cfg.calm_s or alerts_open()):
            ts = datetime.now(timezone.utc)
            batch = [background(rng, ts, f"lv{tag}", n + i, texts) for i in range(int(cfg.live_rate))]
            n += len(batch)
            raw = []
            if surge_at and elapsed >= surge_at[0]:
                surge_at.pop(0)
                ticker = QUIET[len(report.planted)]
                report.planted.append(ticker)
                batch += surge(rng, ts, ticker, f"lv{tag}")
            if poison_at and elapsed >= poison_at[0]:
                poison_at.pop(0)
                raw = poison(rng, settings.max_text_chars, ts)
                dup = batch[:8]  # sent twice back to back: one batch holds both copies
                batch += [dict(e) for e in dup]
                batch.append(item(rng, ts + timedelta(seconds=200), f"sk{tag}", n, "Markets open mixed"))  # inside skew
            while fault_at and elapsed >= fault_at[0][0]:
                th = threading.Thread(target=fault, args=(fault_at.pop(0)[1],))
                th.start()
                threads.append(th)
            send(batch, raw)
            supervise()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t_live - elapsed)))
        for th in threads:
            th.join(120)
        report.calm_extra_s = max(0.0, time.monotonic() - t_live - cfg.live_s - cfg.calm_s)
        traffic_end = datetime.now(timezone.utc)
        log(f"live phase done: {sent[0]} good messages produced")

        try:
            wait_for(lambda: (watch.stored() or 0) >= sent[0], 600, 2, what="every good message stored")
        except TimeoutError as exc:
            log(str(exc))
        watch.stop_flag.set()
        report.longest_stall_s, report.health_lies = watch.longest, watch.lies
        time.sleep(5)  # the detector's last decisions

        with psycopg.connect(dsn) as c:
            report.stored, report.stored_distinct = c.execute(
                "SELECT count(*), count(DISTINCT (source, id)) FROM scored_event").fetchone()
            ids = {f"{s}/{i}" for s, i in c.execute("SELECT source, id FROM scored_event")}
            report.alerts = sorted((f"{kt}:{k}", st.timestamp()) for kt, k, st in
                                   c.execute("SELECT key_type, key, window_start FROM alert"))
            # an alert must resolve when calm traffic went on for calm_s after it opened; one that
            # the calm traffic itself opened later has had no time to (listed, not judged)
            for kt, k, opened in c.execute("SELECT key_type, key, opened_at FROM alert WHERE resolved_at IS NULL"):
                late = opened > traffic_end - timedelta(seconds=cfg.calm_s)
                (report.opened_late if late else report.open_at_end).append(
                    f"{kt}:{k} (opened {(traffic_end - opened).total_seconds():.0f} s before the traffic stopped)")
        report.produced_good = len(good)
        report.missing = sorted(good - ids)[:20]
        dead = asyncio.run(read_all(svc.bootstrap, settings.topic_deadletter))
        report.dead_letters = len(dead)
        for m in dead:
            reason = dict(m.headers or ()).get("reason", b"").decode(errors="replace")
            if not reason:
                report.dead_without_reason += 1
            key = reason.split(":")[0][:40]
            report.dead_reasons[key] = report.dead_reasons.get(key, 0) + 1
        offline = replay(stored_events(dsn), detector_config(settings), partitions=1, batch=settings.max_batch,
                         lateness_s=settings.lateness_s)
        report.offline = sorted((d.key, d.alert_start) for d in offline.decisions if d.action == "open")
        report.offline_late = offline.late
    finally:
        if watch is not None:
            watch.stop_flag.set()
        for w in workers:
            w.stop()
        if producer is not None:
            try:
                producer.close()
            except Exception:  # noqa: BLE001 - the broker may be gone at the end of a failed run
                pass
        svc.stop()
        if cfg.workdir is None and report.ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"logs kept in {root}")
    report.seconds = time.monotonic() - t_start
    return report


def table(r: Report):
    from rich.table import Table

    t = Table(title=f"chaos run ({'3-broker KRaft cluster' if r.config.cluster else 'one broker'}, seed {r.config.seed})")
    t.add_column("check")
    t.add_column("result", justify="right")
    t.add_column("ok")
    rows = [
        ("good messages produced", r.produced_good, True),
        ("stored (rows / distinct)", f"{r.stored} / {r.stored_distinct}", r.stored == r.stored_distinct == r.produced_good),
        ("lost", len(r.missing), not r.missing),
        ("bad messages sent", sum(r.bad_sent.values()), True),
        ("dead letters (with a reason)", f"{r.dead_letters} ({r.dead_letters - r.dead_without_reason})",
         r.dead_letters == sum(r.bad_sent.values()) and not r.dead_without_reason),
        ("alerts (worker / offline replay)", f"{len(r.alerts)} / {len(r.offline)}", r.alerts == r.offline),
        ("planted surges alerted", f"{sum(f'ticker:{p}' in {k for k, _ in r.alerts} for p in r.planted)} / {len(r.planted)}",
         all(f"ticker:{p}" in {k for k, _ in r.alerts} for p in r.planted)),
        ("alerts open at the end, opened ≥ calm_s before the traffic stopped",
         ", ".join(r.open_at_end) or "0", not r.open_at_end),
        ("alerts opened in the last calm_s of traffic, still open (not judged)", ", ".join(r.opened_late) or "0", True),
        ("calm traffic past calm_s while an alert was open (s)", f"{r.calm_extra_s:.0f}", True),
        ("longest outside stall (s)", f"{r.longest_stall_s:.0f}", True),
        ("/health 200 while stalled > limit", len(r.health_lies), not r.health_lies),
        ("faults injected", len(r.faults), True),
        ("worker stops restarted by the harness", len(r.worker_exits), True),
        ("seconds", f"{r.seconds:.0f}", True),
    ]
    for name, value, ok in rows:
        t.add_row(name, str(value), "yes" if ok else "NO")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backlog", type=int, default=Config.backlog)
    ap.add_argument("--live-s", type=float, default=Config.live_s)
    ap.add_argument("--rate", type=float, default=Config.live_rate)
    ap.add_argument("--cluster", action="store_true", help="three KRaft brokers; partition leaders killed")
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--session-timeout", type=float, help="the workers' FINSENT_SESSION_TIMEOUT_S")
    ap.add_argument("--at", default="", help="pin faults in the live phase: broker_pause=20,pg_readonly=21")
    a = ap.parse_args()
    pinned = {k: float(v) for k, v in (x.split("=") for x in a.at.split(",") if x)}
    from rich.console import Console

    console = Console()
    r = run(Config(seed=a.seed, backlog=a.backlog, live_s=a.live_s, live_rate=a.rate, cluster=a.cluster,
                   faults=tuple(f for f in a.faults.split(",") if f), workdir=a.workdir,
                   session_timeout_s=a.session_timeout, fault_times=pinned or None), log=console.print)
    console.print(table(r))
    for t, name, detail in r.faults:
        console.print(f"  fault at {t:6.1f} s: {name} ({detail})")
    console.print(f"dead-letter reasons: {r.dead_reasons}")
    if r.missing:
        console.print(f"[red]missing (first 20): {r.missing}")
    if r.alerts != r.offline:
        console.print(f"[red]worker alerts {r.alerts}\noffline {r.offline}")
    if r.health_lies:
        console.print(f"[red]/health 200 while stalled: {r.health_lies[:10]}")
    if r.worker_exits:
        console.print(f"worker exits: {r.worker_exits}")
    sys.exit(0 if r.ok else 1)


if __name__ == "__main__":
    main()
