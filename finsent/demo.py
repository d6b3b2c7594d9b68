"""`make demo` / `finsent demo`: the main job on embedded defaults.

Starts Kafka (scripts/kafka.sh) and PostgreSQL (pgserver) under var/demo, migrates, creates
the topics, starts the worker and the API (two processes), creates a demo API key, and runs a
small webhook receiver in this process with a subscription pointing at it (loopback and plain
http are allowed for the demo's API only). It prints the API's URLs (OpenAPI page, live page,
curl lines for the alert stream and the surging ticker's series), feeds the simulated stream
with a planted negative surge on $ACME plus a few malformed messages, and prints what happened:
rows, the alert with its evidence, the alert as the SSE stream and the webhook receiver got it
(signature verified), the ticker's series from the API. A second run reuses the data.

It stops everything after the report; `--keep` leaves the stack running (for a browser) until
Ctrl-C. Whatever ends it — SIGINT, SIGTERM, SIGHUP, at any step — it stops every process it
started, every wait bounded (SignalGuard, DemoStack.stop); if it cannot (SIGKILL, a crash), its
reaper process does (finsent.services.Reaper). A taken port (the API's 8000, the worker's 6066)
is replaced by a free one, and the demo says so.

`--replica` also starts a streaming standby of the demo's PostgreSQL (finsent.services.Standby,
asynchronous, a fresh base backup each run, in <data dir>/standby) and points the API's reads at
it (FINSENT_API_READ_URL); the report ends with the standby's replay lag. It stops with the rest,
and the reaper watches it like the primary. The worker and the API archive to <data dir>/archive
(FINSENT_ARCHIVE_DIR) whatever the worker's upkeep takes out of retention.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from core.pg import migrate
from core.settings import Settings
from finsent.services import (ApiProcess, Kafka, Postgres, Reaper, Standby, WorkerProcess, free_port, stop_postmaster,
                              wait_for, worker_env)
from stream.feed import produce
from stream.simulate import COMPANIES, SOCIAL_SOURCES, Surge, feed
from stream.topics import ensure_topics

console = Console(width=None if sys.stdout.isatty() else 120)
# A one-minute feed: 2 s slices, 20 s windows, 30 s of warm-up, 20 s of cool-down after an alert
# (production: 10 s, 120 s, 10 min, 10 min). The warm-up is longer than a window so that a key has
# learned its level before it is tested against it: with 20 s, $ACME went warm having learned
# almost nothing (base share 0.00), its alert never resolved, and a second demo run on the same
# data did not alert; with production's cool-down, a run within ten minutes of the last did not.
DEMO_DETECTOR = {"slice_s": 2, "window_s": 20, "detector_warmup_s": 30, "detector_cooldown_s": 20, "lateness_s": 5}
# For the demo's API only: its webhook receiver is a plain-http server on 127.0.0.1.
DEMO_API = {"webhook_allow_private": "true", "webhook_allow_http": "true", "webhook_retry_base_s": 1.0,
            "api_rate_limit_per_s": 0}  # a page and a curious user share one address: no rate limit in the demo
DEMO_SCOPES = ["read", "subscribe", "feedback"]
SURGE_TICKER = "ACME"
# two seconds of the feed, all bad news on $ACME (~3 items/s, a quarter negative). In the demo's
# 20 s window a one-second surge (60) was borderline against a key that has learned little yet:
# offline with finsent-minilm-v2 it alerted in 82 of 100 seeds; 120 alerted in 400 of 400
SURGE_SIZE = 120
# Legal and regulatory news that is not bad news, as the model reads it (topic legal_regulation,
# neutral or positive). The simulator writes that topic only as bad news (a probe, a lawsuit), and
# a detector that starts on a stream tests a key without history against a typical key's negative
# share (0.35): on a cold start at 60 items/s that topic had 17-23 negatives of as many within
# seconds and alerted in every seed tried, before the planted surge. In the demo's feed a tenth
# of the ordinary items are these, which puts the topic's negative share near a typical key's.
# (The detector no longer tests a cold topic against that prior at all; the mix stays for realism.)
LEGAL_NOT_BAD = ["Court sets hearing date in {co} patent case", "{co} says it will comply with new SEC disclosure rules",
                 "SEC proposes new rules on climate disclosures", "Judge approves {co} settlement with investors",
                 "FTC clears {co} deal without conditions", "Supreme Court to hear {co} copyright appeal next term"]
LEGAL_SHARE = 0.1
# wire items sent without the feed's tickers tag (only the company's name says who it is about),
# and items naming two companies of opposite tone (each gets its own sentiment)
UNTAGGED_SHARE, PAIR_SHARE = 0.25, 0.04
RECEIVER_NAME = "demo webhook receiver"
BAD = [b"not json at all", b'{"id": "x1", "source": "wire-a"}', b'{"id": "x2", "source": "wire-a", "text": 5}',
       b'{"id": "x3", "source": "wire-a", "text": "\xff\xfe", "published_at": "2026-01-01T00:00:00Z"}']


def demo_feed(n: int, seed: int, start: datetime, rate: float, surge_size: int = SURGE_SIZE,
              legal_share: float = LEGAL_SHARE) -> list[dict]:
    """The demo's simulated feed: `n` items at `rate`/s from `start`, the surge at 70 % of it, and
    a share of the ordinary items replaced by legal and regulatory news that is not bad news."""
    events = list(feed(n, seed=seed, surge=Surge(SURGE_TICKER, surge_index(n), surge_size), start=start,
                       spacing_s=1 / rate, prefix=f"demo{int(start.timestamp())}", untagged_share=UNTAGGED_SHARE,
                       pair_share=PAIR_SHARE))
    rng, surge = random.Random(seed * 7919 + 1), range(surge_index(n), surge_index(n) + surge_size)
    for i, e in enumerate(events):
        if i in surge or rng.random() >= legal_share:
            continue
        template, ticker = rng.choice(LEGAL_NOT_BAD), rng.choice(list(COMPANIES))
        e["text"] = template.format(co=COMPANIES[ticker])
        e.pop("tickers", None)
        if "{co}" in template:
            if e["source"] in SOCIAL_SOURCES:
                e["text"] = f"${ticker} {e['text']}"
            else:
                e["tickers"] = [ticker]
    return events


def surge_index(n: int) -> int:
    return int(n * 0.7)


# The simulated feed writes the same surge headlines every run, so on the data of an earlier run
# (var/demo, 72 h of story index) a rerun's surge would be copies of old stories and, rightly, no
# alert: each demo run is fresh news, so the demo empties the band-key index (story_key; stored
# rows and story rows keep their stories, the API still lists them) before it feeds. Only the demo
# does this.
STORY_RESET = "TRUNCATE story_key"


def replay_offline(scorer, runs: list[tuple[int, datetime]], surge_size: int = SURGE_SIZE, seconds: float = 60.0,
                   rate: float = 60.0, read: dict | None = None, legal_share: float = LEGAL_SHARE) -> list:
    """The detector's decisions on the demo's feed, offline: one feed per (seed, start) run, the
    runs on the same state as `make demo` twice on the same data, scored by `scorer` (`read`:
    a cache of its readings, text -> (negative, topic)) and replayed in event-time order through
    the demo's settings (stream.offline). No Kafka, no Postgres."""
    from models.entities import Directory, Linker
    from stream.app import detector_config
    from core.stories import Item as StoryItem
    from stream.offline import event_tuple, replay, with_stories
    from stream.pipeline import link_event
    from stream.records import NewsEvent

    read = {} if read is None else read
    feeds = [demo_feed(int(seconds * rate), seed, start, rate, surge_size, legal_share) for seed, start in runs]
    events = [e for f in feeds for e in f]
    new = list({e["text"] for e in events} - read.keys())
    for text, p in zip(new, scorer.predict(new)):
        read[text] = (p.sentiment == "negative", p.topic)
    settings, linker = Settings(**DEMO_DETECTOR), Linker(Directory.configured())
    tuples, items = [], []
    for e in events:  # the worker's ticker keys (entities at or above the cut, cashtags, feed tags), each
        ev = NewsEvent(**e)  # counted with its entity's own sentiment, as the worker counts them
        ents = link_event(linker, ev)
        own = _entity_negatives(scorer, ev.text, ents, read, settings.entity_min_relevance) if len(ents) > 1 else {}
        tuples.append(event_tuple(ev, *read[ev.text], ents, settings.entity_min_relevance, own))
        items.append(StoryItem(ev.source, ev.id, ev.published_at, ev.text, tuple(tuples[-1][4])))
    # with FINSENT_STORIES on, copies of one story weighted as the worker weights them: each run from an
    # empty story index, as `finsent demo` clears it before it feeds (STORY_RESET); off, every item counts
    feed, at = [], 0
    for f in feeds:
        run, run_items, at = tuples[at: at + len(f)], items[at: at + len(f)], at + len(f)
        feed += with_stories(run, run_items) if settings.stories else run
    return replay(feed, detector_config(settings), partitions=1).decisions


def _entity_negatives(scorer, text: str, ents, read: dict, min_relevance: float) -> dict[str, bool]:
    """{ticker: its own sentiment is negative} for a multi-entity item (models.entity_scores), cached in `read`."""
    from types import SimpleNamespace

    from models.entity_scores import entity_sentiments

    key = ("entities", text, tuple(e.ticker for e in ents))
    if key not in read:
        negative, _ = read[text]
        item = SimpleNamespace(sentiment="negative" if negative else "other", score=0.0)
        scores = entity_sentiments(scorer, [(text, item)], [ents], min_relevance)[0]
        read[key] = {e.ticker: s.sentiment == "negative" for e, s in zip(ents, scores)}
    return read[key]


def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
    """A receiver's check of a finsent webhook, exactly as api/README.md documents it."""
    ts = headers["X-Finsent-Timestamp"]
    expected = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return (abs(time.time() - int(ts)) <= tolerance_s
            and hmac.compare_digest(headers["X-Finsent-Signature"], "sha256=" + expected))


@dataclass
class Received:
    at: float
    delivery: str
    event: str
    key: str
    severity: str
    verified: bool
    alert_id: int | None


class WebhookReceiver:
    """The demo's webhook target: an HTTP server on 127.0.0.1 (a thread of this process) that
    verifies each POST's signature with the subscription's secret, answers 204 when it holds
    (401 otherwise, which the API retries), and keeps what it got."""

    path = "/finsent-webhook"

    def __init__(self, on_receive=None):
        self.secret: str | None = None
        self.received: list[Received] = []
        self.on_receive = on_receive
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    ok = receiver.secret is not None and verify(receiver.secret, self.headers, body)
                    msg = json.loads(body)
                    alert = msg.get("alert") or {}
                    got = Received(time.time(), self.headers.get("X-Finsent-Delivery", ""), msg.get("event", "?"),
                                   f"{alert.get('key_type')}:{alert.get('key')}", alert.get("severity", "?"), ok,
                                   alert.get("alert_id"))
                except (KeyError, ValueError, TypeError):
                    ok, got = False, None
                self.send_response(204 if ok else 401)
                self.end_headers()
                if got is not None:
                    receiver.received.append(got)
                    if receiver.on_receive:
                        receiver.on_receive(got)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for serve_forever, forever if it never ran
            self.server.shutdown()
        self.server.server_close()


@dataclass
class StreamEvent:
    at: float
    id: int
    event: str
    key: str
    severity: str
    alert_id: int | None


@dataclass
class AlertStreamFollower:
    """Follows the API's SSE alert stream (what the printed curl line does) in a thread."""

    url: str
    key: str
    on_event: object = None
    events: list[StreamEvent] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    response: object = None

    def start(self) -> AlertStreamFollower:
        threading.Thread(target=self._run, name="sse-follower", daemon=True).start()
        return self

    def close(self) -> None:
        """Hang up (before the API stops: it need not wait for this stream)."""
        if self.response is not None:
            try:
                self.response.close()
            except Exception:  # noqa: BLE001 (closing from another thread: whatever it says, it is closed)
                pass

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(5, read=None), trust_env=False) as http, \
                    http.stream("GET", self.url, headers={"X-API-Key": self.key}) as resp:
                self.response = resp
                self.connected.set()
                event = None
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event:
                        msg = json.loads(line[5:])
                        alert = msg.get("alert") or {}
                        got = StreamEvent(time.time(), msg["id"], event, f"{alert.get('key_type')}:{alert.get('key')}",
                                          alert.get("severity", "?"), alert.get("alert_id"))
                        self.events.append(got)
                        if self.on_event:
                            self.on_event(got)
        except (httpx.HTTPError, httpx.StreamError, ValueError, OSError, RuntimeError):  # the API stopped or
            pass  # close() hung up: the stream ends


class DemoStack:
    """Kafka, PostgreSQL, the worker and the API, started the way `make demo` does; plus the demo
    key, the webhook receiver and its subscription. Tests drive the same object."""

    def __init__(self, data_dir: Path, web_port: int = 6066, api_port: int = 8000, on_webhook=None,
                 replica: bool = False):
        self.dir = Path(data_dir)
        # a read replica for the API (--replica); the archive for days the worker's upkeep retires
        self.standby_dir = self.dir / "standby" if replica else None
        self.standby: Standby | None = None  # made once PostgreSQL runs (it takes the server's user)
        self.archive_dir = self.dir / "archive"
        self.wanted_ports = {"API": api_port, "worker's health and metrics": web_port}
        self.web_port, self.api_port = free_port(web_port), free_port(api_port)
        self.kafka, self.pg = Kafka(self.dir / "kafka"), Postgres(self.dir / "pg")
        self.worker: WorkerProcess | None = None
        self.api: ApiProcess | None = None
        self.receiver = WebhookReceiver(on_webhook)
        self.follower: AlertStreamFollower | None = None
        self.reaper = Reaper(self.dir / "reaper.log")
        self.key = ""
        self.subscription_id = 0
        self.reported = threading.Event()  # set once run_demo has printed its report

    def port_notes(self) -> list[str]:
        """One line per port that was taken, with the one used instead."""
        used = {"API": self.api_port, "worker's health and metrics": self.web_port}
        return [f"port {want} is taken: the {name} listens on 127.0.0.1:{used[name]} instead"
                for name, want in self.wanted_ports.items() if want and used[name] != want]

    def start(self) -> DemoStack:
        self.dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # pgserver keeps a lock file in the user's runtime directory; without XDG_RUNTIME_DIR
            # (root in a container, a shell without a login session) platformdirs says so and
            # uses /tmp/runtime-<uid>, which works. A runtime directory that is set but unusable
            # is still reported.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set", category=UserWarning,
                                    module=r"platformdirs\.")
            import pgserver  # noqa: F401  (imported here once, by Postgres.start after)
        # whatever ends this process, nothing it starts outlives it: stop() stops each, and if
        # stop() never runs (SIGKILL, a crash) the reaper does
        self.reaper.start()
        self.reaper.watch("kafka", self.kafka.dir)
        self.reaper.watch("postgres", self.pg.dir)
        if self.standby_dir is not None:
            self.reaper.watch("postgres", self.standby_dir)
        self.kafka.start()
        self.pg.start()
        migrate(self.pg.url)
        if self.standby_dir is not None:
            self._start_standby()
        self.archive_dir.mkdir(exist_ok=True)
        self.settings = Settings(kafka_bootstrap=self.kafka.bootstrap, DATABASE_URL=self.pg.url, web_port=self.web_port,
                                 **DEMO_DETECTOR)
        asyncio.run(ensure_topics(self.settings))
        self.worker = WorkerProcess(worker_env(self.kafka.bootstrap, self.pg.url, web_port=self.web_port,
                                               archive_dir=self.archive_dir, **DEMO_DETECTOR),
                                    self.dir / "worker.log").start()
        self.reaper.watch("group", self.worker.proc.pid)
        self._start_api()
        self.key = asyncio.run(self._create_key())
        self._wait_api()
        self.receiver.start()
        with httpx.Client(base_url=self.api.url, headers={"X-API-Key": self.key}, trust_env=False, timeout=10) as http:
            r = http.post("/v1/subscriptions", json={"name": RECEIVER_NAME, "delivery": "webhook",
                                                     "url": self.receiver.url, "key_types": ["ticker", "topic"]})
            r.raise_for_status()
        self.subscription_id, self.receiver.secret = r.json()["id"], r.json()["secret"]
        return self

    def _start_standby(self) -> None:
        """A fresh base backup each run: a standby kept from an earlier run may need WAL the
        primary has recycled since, and would then never catch up."""
        stop_postmaster(self.standby_dir)  # one left by a run whose stop and reaper both failed
        shutil.rmtree(self.standby_dir, ignore_errors=True)
        self.standby = Standby(self.pg, self.standby_dir).start()

    def _start_api(self) -> None:
        log = self.dir / "api.log"
        self._api_log_from = log.stat().st_size if log.exists() else 0
        extra = {"api_read_url": self.standby.url} if self.standby is not None else {}
        self.api = ApiProcess(worker_env(self.kafka.bootstrap, self.pg.url, api_port=self.api_port,
                                         archive_dir=self.archive_dir, **extra, **DEMO_API), log).start()
        self.reaper.watch("group", self.api.proc.pid)

    def _wait_api(self, tries: int = 3) -> None:
        """Until the API answers; when another program took its port after free_port() chose
        it, again on another port."""
        for attempt in range(tries):
            try:
                self.api.wait_ready()
                return
            except RuntimeError:
                with open(self.api.log_path, "rb") as f:
                    f.seek(self._api_log_from)
                    taken = b"address already in use" in f.read().lower()
                if not taken or attempt == tries - 1:
                    raise
                self.api.stop()
                self.api_port = free_port()
                self._start_api()

    async def _create_key(self) -> str:
        import asyncpg

        from api import keys

        conn = await asyncpg.connect(self.pg.dsn)
        try:
            # a second run reuses the database: the receivers of earlier runs are gone
            await conn.execute("UPDATE subscription SET enabled = false, disabled_reason = 'an earlier demo run' "
                               "WHERE name = $1 AND enabled", RECEIVER_NAME)
            return (await keys.create(conn, name=f"demo {datetime.now():%Y-%m-%d %H:%M}", scopes=DEMO_SCOPES))[1]
        finally:
            await conn.close()

    @property
    def api_url(self) -> str:
        return self.api.url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop everything, every wait bounded: the API and the worker at once (SIGTERM, SIGKILL
        after `timeout`), then Kafka and PostgreSQL at once. Safe after a partial start."""
        if self.follower is not None:
            self.follower.close()
        procs = [p for p in (self.api, self.worker) if p is not None]
        for p in procs:
            p.terminate()
        failed = _all(*[lambda p=p: p.stop(timeout) for p in procs])
        self.receiver.stop()
        failed += _all(self.kafka.stop, self._stop_pg, self._stop_standby)
        if failed:  # the reaper goes over everything again
            console.print(f"[red]stopping failed:[/red] {'; '.join(map(repr, failed))}; the reaper stops what is left")
            self.reaper.abandon()
        else:
            self.reaper.release()

    def _stop_standby(self) -> None:
        if self.standby_dir is not None:  # by its pid file: also one interrupted while it was starting
            stop_postmaster(self.standby_dir)

    def replica_lag(self) -> tuple[float, int, int]:
        """The standby's replay lag in seconds (Standby.lag_sql) and scored_event's rows on the
        standby and on the primary, read in that order."""
        with psycopg.connect(self.standby.dsn, autocommit=True, connect_timeout=10) as c:
            lag, on_standby = c.execute(f"SELECT ({Standby.lag_sql}), (SELECT count(*) FROM scored_event)").fetchone()
        with psycopg.connect(self.pg.dsn, autocommit=True, connect_timeout=10) as c:
            on_primary = c.execute("SELECT count(*) FROM scored_event").fetchone()[0]
        return float(lag), on_standby, on_primary

    def _stop_pg(self) -> None:
        if self.pg.server is not None:
            self.pg.stop()
        else:  # interrupted while pgserver was starting it: no handle, maybe a server
            stop_postmaster(self.pg.dir)

    def feed(self, n: int, rate: float, started: datetime, bad: list[bytes] = BAD, seed: int | None = None) -> None:
        seed = int(time.time()) % 1000 if seed is None else seed
        events, surge_at = demo_feed(n, seed, started, rate), surge_index(n)
        asyncio.run(produce(self.kafka.bootstrap, events[:surge_at] + bad + events[surge_at:], self.settings.topic_news,
                            self.settings.topic_social, rate))


def _all(*calls) -> list[BaseException]:
    """Run the calls at once, each in a thread; returns when all have returned, with what they raised."""
    failed: list[BaseException] = []

    def run(call):
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 (reported by the caller)
            failed.append(exc)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def links(api_url: str, key: str, since: datetime) -> dict[str, str]:
    """What the demo prints for a person to try; the test opens the same URLs."""
    start = quote(since.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {
        "OpenAPI page": f"{api_url}/docs",
        "live page": f"{api_url}/",
        "alert stream": f"curl -N -H 'X-API-Key: {key}' '{api_url}/v1/stream/alerts?key_type=ticker&key_type=topic'",
        f"{SURGE_TICKER} series": f"curl -s '{api_url}/v1/series?key_type=ticker&key={SURGE_TICKER}&bucket=1m&start={start}'",
    }


def run_demo(data_dir: Path, seconds: float, rate: float, hold: bool = False, web_port: int = 6066,
             api_port: int = 8000, on_ready=None, release: threading.Event | None = None, replica: bool = False) -> int:
    """Returns 0 when the planted surge alerted and the webhook came with a valid signature.

    `hold`: after the report, keep everything running until Ctrl-C. `replica`: a streaming standby
    of PostgreSQL serves the API's reads; the report ends with its lag. For tests: `on_ready(stack)`
    is called once the stack is up, before the feed; with `release`, the stack stays up after
    the report until that event is set."""
    guard = SignalGuard().install()
    stack = DemoStack(data_dir, web_port=web_port, api_port=api_port, on_webhook=lambda r: console.print(
        f"  webhook ← {r.event} {r.key} ({r.severity}), delivery {r.delivery}: signature "
        + ("[green]verified[/green]" if r.verified else "[red]INVALID[/red]")), replica=replica)
    ok = False
    try:
        with console.status("starting Kafka, PostgreSQL" + (" and its standby" if replica else "")
                            + ", the worker and the API"):
            stack.start()
        started = datetime.now(timezone.utc)
        for note in stack.port_notes():
            console.print(f"[yellow]{note}[/yellow]")
        console.print(f"Kafka {stack.kafka.bootstrap}   PostgreSQL {stack.pg.dsn}", soft_wrap=True)
        if stack.standby is not None:
            console.print(f"read replica {stack.standby.dsn} (streaming standby; the API reads from it: "
                          "FINSENT_API_READ_URL)", soft_wrap=True)
        console.print(f"archive {stack.archive_dir} (FINSENT_ARCHIVE_DIR: days past retention, Parquet)",
                      soft_wrap=True)
        console.print(f"API {stack.api_url} (log {stack.dir / 'api.log'}); demo API key (scopes "
                      f"{', '.join(DEMO_SCOPES)}): {stack.key}", soft_wrap=True)
        for name, value in links(stack.api_url, stack.key, started - timedelta(minutes=5)).items():
            console.print(f"  {name:<14} {value}", soft_wrap=True, highlight=False)
        console.print(f"webhook receiver {stack.receiver.url} (subscription {stack.subscription_id}; it verifies "
                      "X-Finsent-Signature with the secret shown once at creation)", soft_wrap=True)
        follower = stack.follower = AlertStreamFollower(
            f"{stack.api_url}/v1/stream/alerts?key_type=ticker&key_type=topic", stack.key,
            lambda e: console.print(f"  stream  ← {e.event} {e.key} ({e.severity}), event id {e.id}")).start()
        follower.connected.wait(10)
        if on_ready:
            on_ready(stack)
        conn = psycopg.connect(stack.pg.dsn, autocommit=True)
        conn.execute(STORY_RESET)
        before = conn.execute("SELECT count(*) FROM scored_event").fetchone()[0]
        seed = int(time.time()) % 1000
        n = int(seconds * rate)
        surge_at = surge_index(n)
        surge_time = time.time() + surge_at / rate
        console.print(f"feeding {n} simulated items over {seconds:.0f} s ({rate:.0f}/s), negative surge on "
                      f"${SURGE_TICKER} at item {surge_at}, plus {len(BAD)} malformed messages (seed {seed})", soft_wrap=True)
        stack.feed(n, rate, started, seed=seed)
        wait_for(lambda: conn.execute("SELECT count(*) FROM scored_event").fetchone()[0] >= before + n, 120,
                 what="all rows in Postgres")
        alerts = wait_for(lambda: conn.execute("SELECT id, opened_at FROM alert WHERE opened_at >= %s AND key = %s",
                                               (started, SURGE_TICKER)).fetchall(), 10, what="the planted alert")
        # the webhook normally lands within a second of the alert row
        wait_for(lambda: any(r.verified and r.alert_id in {a[0] for a in alerts} for r in stack.receiver.received),
                 15, 0.2, what="the webhook of the planted alert")
        time.sleep(1)
        report(conn, before, started, surge_time, stack)
        ok = api_report(stack, started, alerts, follower)
        if stack.standby is not None:
            replica_report(stack)
        stack.reported.set()
        if release is not None:
            release.wait(300)
        if hold:
            console.print(f"still running: live page {stack.api_url}/  — Ctrl-C (or SIGTERM) stops everything")
            while stack.worker.alive() and stack.api.alive():
                time.sleep(1)
            if not ok or not (stack.worker.alive() and stack.api.alive()):
                console.print(f"[red]the {'worker' if not stack.worker.alive() else 'API'} exited[/red]; "
                              f"logs in {data_dir}")
    except KeyboardInterrupt as exc:
        console.print(f"{getattr(exc, 'name', 'SIGINT')}: stopping the API, the worker, Kafka and PostgreSQL")
    except (TimeoutError, RuntimeError, httpx.HTTPError, OSError, psycopg.Error) as exc:
        console.print(f"[red]demo failed:[/red] {exc}; logs in {data_dir}", soft_wrap=True)
    finally:
        guard.stopping = True  # a signal now must not cut the stop short; each of its waits is bounded
        t0 = time.monotonic()
        stack.stop()
        guard.uninstall()
        console.print(f"stopped the API, the worker, Kafka and PostgreSQL{' and its standby' if replica else ''} "
                      f"in {time.monotonic() - t0:.1f} s; "
                      f"data kept in {data_dir}")
    return 0 if ok else 1


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) received by the demo."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.name = signal.Signals(signum).name


class SignalGuard:
    """SIGINT, SIGTERM and SIGHUP end the demo the same way: the first raises Interrupted in the
    main thread, so that run_demo's `finally` stops everything it started; once that stop has
    begun, further signals only say so. (Python's default for SIGTERM and SIGHUP is to die at
    once, leaving Kafka, PostgreSQL, the worker and the API behind; the reaper covers SIGKILL.)
    Signal handlers belong to the main thread: elsewhere (a test running the demo in a thread)
    this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.stopping = False
        self.previous: dict = {}

    def install(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def uninstall(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if self.stopping:
            console.print(f"{signal.Signals(signum).name}: already stopping (every wait is bounded)")
            return
        self.stopping = True
        raise Interrupted(signum)


def report(conn, before: int, started: datetime, surge_time: float, stack: DemoStack) -> None:
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
    names_report(conn, started)
    console.print(f"dead letters: topic finsent.deadletter (reason in headers); worker log {stack.dir / 'worker.log'}; "
                  f"metrics http://127.0.0.1:{stack.web_port}/metrics, health http://127.0.0.1:{stack.web_port}/health", soft_wrap=True)


# items of this run in which a company was found by its name alone (no cashtag, no feed tag)
BY_NAME_SQL = """
SELECT count(DISTINCT (e.source, e.id)), count(*)
FROM scored_event e JOIN event_entity x ON x.source = e.source AND x.event_id = e.id AND x.published_at = e.published_at
WHERE e.ingested_at >= %(started)s AND 'name' = ANY(x.sources) AND NOT x.sources && ARRAY['cashtag', 'tag']::varchar[]
"""
BY_NAME_SAMPLES_SQL = """
SELECT e.text, string_agg(x.ticker || ' ' || x.sentiment || ' (' || x.sentiment_from || ', relevance '
                          || round(x.relevance::numeric, 2) || ')', '; ' ORDER BY x.relevance DESC, x.ticker),
       count(*) AS entities
FROM scored_event e JOIN event_entity x ON x.source = e.source AND x.event_id = e.id AND x.published_at = e.published_at
WHERE e.ingested_at >= %(started)s AND e.id IN (
    SELECT y.event_id FROM event_entity y WHERE y.source = e.source AND y.published_at = e.published_at
    AND 'name' = ANY(y.sources) AND NOT y.sources && ARRAY['cashtag', 'tag']::varchar[])
GROUP BY e.source, e.id, e.text
ORDER BY count(*) DESC, min(e.published_at) LIMIT %(limit)s
"""


def names_report(conn, started: datetime, limit: int = 6) -> None:
    """Which items were linked by a company's name alone, two-company items first, with each
    entity's own sentiment and where it came from (item, entity_head)."""
    items, entities = conn.execute(BY_NAME_SQL, {"started": started}).fetchone()
    t = Table(title=f"linked by name alone (no cashtag, no feed tag): {items} items, {entities} entities")
    t.add_column("text", overflow="fold")
    t.add_column("entities: sentiment (from, relevance)", overflow="fold")
    for text, ents, _ in conn.execute(BY_NAME_SAMPLES_SQL, {"started": started, "limit": limit}):
        t.add_row(text[:110], ents)
    console.print(t)


def api_report(stack: DemoStack, started: datetime, alerts: list, follower: AlertStreamFollower) -> bool:
    """What the API delivered: the planted alert by webhook (signature checked) and on the SSE
    stream, each timed from the alert row; the surging ticker's series as the curl line gets it."""
    opened = {a[0]: a[1].timestamp() for a in alerts}
    hooks = [r for r in stack.receiver.received if r.alert_id in opened]
    first = min(hooks, key=lambda r: r.at)
    console.print(f"webhook: {len(stack.receiver.received)} received, "
                  f"{sum(r.verified for r in stack.receiver.received)} with a valid signature; the planted alert's "
                  f"'{first.event}' arrived {first.at - opened[first.alert_id]:+.2f} s after its row")
    sse = [e for e in follower.events if e.alert_id in opened]
    if sse:
        console.print(f"alert stream (SSE): {len(follower.events)} events; the planted alert's '{sse[0].event}' "
                      f"{sse[0].at - opened[sse[0].alert_id]:+.2f} s after its row")
    with httpx.Client(trust_env=False, timeout=10) as http:
        body = http.get(f"{stack.api_url}/v1/series", params={"key_type": "ticker", "key": SURGE_TICKER,
                                                               "bucket": "1m", "start": started.isoformat()}).json()
    s = body["series"][0]
    cells = [f"{t[11:16]} {n:>3} {'—' if sh is None else f'{sh:.0%}'}" for t, n, sh in
             zip(s["t"], s["n"], s["negative_share"]) if n]
    console.print(f"series of ${SURGE_TICKER} from the API (1-minute buckets: items, negative share): "
                  + " | ".join(cells), soft_wrap=True, highlight=False)
    return all(r.verified for r in hooks)


def replica_report(stack: DemoStack) -> None:
    """The standby's lag (Standby.lag_sql: seconds since the last replayed commit while WAL is
    still to replay, 0 when caught up) and the rows it holds against the primary's."""
    try:
        lag, on_standby, on_primary = stack.replica_lag()
    except (psycopg.Error, OSError) as exc:
        console.print(f"[red]read replica: no answer[/red] ({exc})", soft_wrap=True)
        return
    console.print(f"read replica: lag {lag:.2f} s (replay behind the primary), scored_event {on_standby} rows on "
                  f"the standby, {on_primary} on the primary", soft_wrap=True)
