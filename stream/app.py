"""The Faust app: `finsent worker` runs it. create_app builds the worker's parts (stream.worker.Worker)
and lets stream.agents, stream.timers and stream.pages register around them; the work is in plain
objects (stream.pipeline.BatchProcessor, stream.detection.Detection, stream.sink.PostgresSink).
Faust and aiokafka internals live in stream.kafka_compat only.

The model is loaded and checked before the worker starts consuming (run_worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import faust

from core import logs
from core.masking import Masker
from core.settings import Settings
from core.stories import Stories
from models.runtime import Scorer
from stream import agents, pages, timers
from stream.delivery import EXIT_AGENT_FAILED, FaustPublisher, delivered  # noqa: F401 (EXIT_AGENT_FAILED: tests)
from stream.detection import Detection
from stream.detector import DetectorConfig, SpikeDetector
from stream.hotswap import worker_swap
from stream.kafka_compat import FetchGuard, guarded_transport
from stream.lifecycle import Upkeep
from stream.pipeline import BatchProcessor
from stream.records import AlertRecord
from stream.progress import StallWatch
from stream.sink import DbTimeouts, PostgresSink
from stream.watermark import PartitionClock
from stream.worker import Worker

log = logs.get("finsent.worker")


def detector_config(s: Settings) -> DetectorConfig:
    return DetectorConfig(slice_s=s.slice_s, window_s=s.window_s, min_count=s.detector_min_count,
                          p_threshold=s.detector_p, warmup_s=s.detector_warmup_s, cooldown_s=s.detector_cooldown_s,
                          pause_s=s.pause_s, lateness_s=s.lateness_s,
                          key_ttl_s=s.detector_key_ttl_s, max_keys=s.detector_max_keys,
                          story_copy_weight=s.detector_story_copy_weight,
                          story_copy_cap=s.detector_story_copy_cap)


def create_app(settings: Settings, scorer: Scorer, expected_inputs: frozenset[str], linker=None) -> faust.App:
    """The app and its parts (stream.worker.Worker); agents, timers and pages register themselves."""
    faust_root = os.path.join(tempfile.gettempdir(), "finsent-faust")
    os.makedirs(faust_root, exist_ok=True)
    app = faust.App(
        settings.consumer_group, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
        autodiscover=False, topic_partitions=settings.partitions, topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
        web_bind=settings.web_host, web_port=settings.web_port, web_enabled=True,
        broker_commit_interval=1.0, producer_linger=0.005, producer_acks=-1,
        producer_request_timeout=settings.kafka_send_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        # tables live in memory (state is rebuilt from changelogs); keep Faust's empty data dir out of the CWD
        datadir=os.path.join(faust_root, "{conf.id}"),
    )
    guard = FetchGuard()
    # the input topics are committed by the worker (stream.commits), never by Faust's acks
    app.transport = guarded_transport(guard, frozenset(settings.input_topics))(app.conf.broker_consumer, app)
    raw = {"value_type": bytes, "value_serializer": "raw", "key_serializer": "raw"}
    deadletter = app.topic(settings.topic_deadletter, **raw)
    scored = app.topic(settings.topic_scored, partitions=settings.partitions, **raw)
    alerts = app.topic(settings.topic_alerts, **raw)
    state = app.Table("detector-state", default=dict, partitions=settings.partitions)
    sink = PostgresSink(settings.asyncpg_dsn, timeouts=DbTimeouts(
        statement_s=settings.db_statement_timeout_s, lock_s=settings.db_lock_timeout_s,
        idle_in_transaction_s=settings.db_idle_in_transaction_timeout_s, command_s=settings.db_command_timeout_s),
        dedupe_window_s=settings.dedupe_window_h * 3600.0)
    clock = PartitionClock(settings.lateness_s, settings.idle_partition_s)
    processor = BatchProcessor(scorer, sink, FaustPublisher(deadletter, scored, settings.kafka_send_timeout_s), clock,
                               slice_s=settings.slice_s, max_chars=settings.max_text_chars,
                               max_skew_s=settings.max_future_skew_s, masker=Masker(settings.mask),
                               max_deadletter_bytes=app.conf.producer_max_request_size - 16_384,
                               linker=linker, entity_min_relevance=settings.entity_min_relevance, settings=settings,
                               # one per worker (the index itself is in Postgres); off unless FINSENT_STORIES
                               stories=Stories(cache_keys=settings.story_cache_keys,
                                               # (an item's time is at most this far ahead: the key cache
                                               # relies on no item past it, core.stories.KeyCache)
                                               skew_s=max(3600.0, settings.max_future_skew_s))
                               if settings.stories else None)

    async def send_alert(key: str, record: AlertRecord) -> None:
        # confirmed before the detector's state moves on; a failure stops the worker (agent_failed)
        await delivered(alerts, [{"key": key.encode(), "value": record.encode()}], settings.kafka_send_timeout_s,
                        "alert")

    w = Worker(settings, app, app.topic(*settings.input_topics, acks=False, **raw), deadletter, scored, alerts, sink, clock,
               processor, worker_swap(settings.model_dir, processor, lambda d: load_scorer(settings, d)),
               Detection(SpikeDetector(detector_config(settings)), state, sink, send_alert, expected_inputs,
                         settings.pause_s, stall_s=settings.watermark_stall_s),
               guard, StallWatch(settings.stall_s), Upkeep(sink, settings))
    agents.register(w)
    timers.register(w)
    pages.register(w)

    @app.service
    class SinkLifecycle(faust.Service):
        async def on_stop(self) -> None:
            await sink.close()

    return app


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup v2 CPU quota (a container's
    --cpus), at least 1. The worker's ONNX Runtime threads default to this (FINSENT_ORT_THREADS=0):
    one thread left a third of a 2-core machine idle (188 against 294 msgs/s, issue 17)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


class RateLimitedLog(logging.Filter):
    """Lets one record matching `text` through per `every_s`, saying how many it held back:
    Faust warns "producer buffer full" at every step of a backlog drain (its conductor waits for
    the table's changelog writes, which is flow control, not a fault)."""

    def __init__(self, text: str, every_s: float = 60.0):
        super().__init__()
        self.text, self.every_s, self.held, self.last = text, every_s, 0, float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self.last < self.every_s:
            self.held += 1
            return False
        if self.held:
            record.msg, record.args = f"{record.getMessage()} ({self.held} more in the last {self.every_s:.0f} s)", ()
        self.last, self.held = now, 0
        return True


def scorer_threads(settings: Settings) -> tuple[int, int]:
    """(ONNX Runtime intra-op threads per run, chunks run at once) for the worker's Scorer.
    FINSENT_ORT_THREADS=0 (default): one single-threaded run per usable CPU, each on its own
    chunk of the batch. The worker shares its cores with Postgres and the broker, and a
    two-thread run waits at every operator for the thread another process holds off its core:
    on real text under shared-core load it cost 12-22 % more CPU per text in the model alone and
    9 % more per message in the worker than two one-thread runs (docs/stream.md, "Threads").
    N > 0: N intra-op threads and one chunk at a time (the earlier behaviour)."""
    if settings.ort_threads:
        return settings.ort_threads, 1
    return 1, usable_cpus()


def load_scorer(settings: Settings, directory: Path | None = None) -> Scorer:
    """Load and check the model before consuming: a bad MODEL_DIR or BACKEND stops the worker
    at start with the reason, instead of swallowing the stream. (`directory`: a hot swap's.)"""
    threads, workers = scorer_threads(settings)
    scorer = Scorer.from_artifact(directory or settings.model_dir, settings.backend, settings.precision,
                                  device=settings.device, max_batch=64, threads=threads, workers=workers)
    check = getattr(scorer, "check", None)
    if check is not None:
        check()
    else:
        scorer.predict(["Shares fell after the company cut its outlook."])
    return scorer


def load_linker(settings: Settings):
    """The entity linker, built once before consuming: FINSENT_SYMBOLS_FILE must exist when set."""
    from models.entities import Directory, Linker

    if settings.symbols_file is not None and not settings.symbols_file.exists():
        raise FileNotFoundError(f"FINSENT_SYMBOLS_FILE {settings.symbols_file} does not exist")
    linker = Linker(Directory.configured(settings.symbols_file))
    log.info("entity linker ready", directory=linker.directory.version, symbols=len(linker.directory))
    return linker


def run_worker(settings: Settings, loglevel: str = "WARNING", scorer: Scorer | None = None) -> None:
    """`scorer` is given only by bench/ (a scorer that costs nothing, to measure the streaming
    layer's ceiling); `finsent worker` always loads the model of the settings."""
    from faust.worker import Worker

    from stream.topics import ensure_topics

    logs.configure()
    logging.getLogger("faust.transport.producer").addFilter(RateLimitedLog("producer buffer full"))
    try:
        t0 = time.perf_counter()
        scorer = scorer or load_scorer(settings)
        log.info("model ready", version=scorer.version, backend=settings.backend, device=settings.device,
                 seconds=round(time.perf_counter() - t0, 2))
    except Exception as exc:  # noqa: BLE001 - any failure to load is fatal, with its reason
        log.error("model failed to load; not consuming", model_dir=str(settings.model_dir), backend=settings.backend,
                  error=f"{type(exc).__name__}: {exc}"[:500])
        sys.exit(3)
    try:
        linker = load_linker(settings)
    except Exception as exc:  # noqa: BLE001 - a symbol directory that cannot be read is fatal, with its reason
        log.error("symbol directory failed to load; not consuming", symbols_file=str(settings.symbols_file),
                  error=f"{type(exc).__name__}: {exc}"[:500])
        sys.exit(3)
    partitions = asyncio.run(ensure_topics(settings))
    expected = frozenset(f"{t}/{p}" for t in settings.input_topics for p in range(partitions[t]))
    app = create_app(settings, scorer, expected, linker)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

