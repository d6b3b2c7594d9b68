"""The Faust app: `finsent worker` runs it. Agents stay a few lines; the work is in plain
objects (stream.pipeline.BatchProcessor, stream.detection.Detection, stream.sink.PostgresSink).

  score:  input bytes → noack_take batch → BatchProcessor.process (validate, score, store rows +
          rollups + count records in one transaction, dead-letter what cannot be stored) →
          ack. Events are acked only after process returns, so offsets never pass an item
          that is neither in Postgres nor in the dead-letter topic; then the partitions'
          event-time marks go to every partition of finsent.scored.
  detect: finsent.scored (counts keyed by aggregation key, plus marks) → Detection → alerts to
          Postgres (alert, alert_event) and finsent.alerts.

The model is loaded and checked before the worker starts consuming (run_worker).
"""

from __future__ import annotations

import asyncio
import sys
import time

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import logs
from core.masking import Masker
from core.settings import Settings
from models.runtime import Scorer
from stream import metrics
from stream.detection import Detection
from stream.detector import DetectorConfig, SpikeDetector
from stream.pipeline import BatchProcessor, Dead, Incoming
from stream.sink import PostgresSink
from stream.watermark import PartitionClock

log = logs.get("finsent.worker")
MARKS_KEY = b"~marks"


def detector_config(s: Settings) -> DetectorConfig:
    return DetectorConfig(slice_s=s.slice_s, window_s=s.window_s, min_count=s.detector_min_count,
                          p_threshold=s.detector_p, warmup_s=s.detector_warmup_s, cooldown_s=s.detector_cooldown_s,
                          pause_s=s.pause_s)


def incoming(event) -> Incoming:
    m = event.message
    return Incoming(m.value, m.key, m.topic, m.partition, m.offset, (m.timestamp or 0) / 1000 or None)


class FaustPublisher:
    def __init__(self, deadletter, scored):
        self.deadletter, self.scored = deadletter, scored

    async def dead(self, dead: list[Dead]) -> None:
        for d in dead:
            await self.deadletter.send(key=d.item.key, value=d.item.value, headers=d.headers())

    async def counts(self, records: list[tuple[str, bytes]]) -> None:
        for key, value in records:
            await self.scored.send(key=key.encode(), value=value)


def create_app(settings: Settings, scorer: Scorer, expected_inputs: frozenset[str]) -> faust.App:
    app = faust.App(
        settings.consumer_group, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
        autodiscover=False, topic_partitions=settings.partitions, topic_replication_factor=1,
        consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
        web_bind=settings.web_host, web_port=settings.web_port, web_enabled=True,
        broker_commit_interval=1.0, producer_linger=0.005,
    )
    raw = {"value_type": bytes, "value_serializer": "raw", "key_serializer": "raw"}
    inputs = app.topic(*settings.input_topics, **raw)
    deadletter = app.topic(settings.topic_deadletter, **raw)
    scored = app.topic(settings.topic_scored, partitions=settings.partitions, **raw)
    alerts = app.topic(settings.topic_alerts, **raw)
    state = app.Table("detector-state", default=dict, partitions=settings.partitions)
    sink = PostgresSink(settings.asyncpg_dsn)
    clock = PartitionClock(settings.lateness_s, settings.idle_partition_s)
    processor = BatchProcessor(scorer, sink, FaustPublisher(deadletter, scored), clock, slice_s=settings.slice_s,
                               max_chars=settings.max_text_chars, max_skew_s=settings.max_future_skew_s,
                               masker=Masker(settings.mask))

    async def send_alert(key: str, payload: dict) -> None:
        await alerts.send(key=key.encode(), value=orjson.dumps(payload))

    detection = Detection(SpikeDetector(detector_config(settings)), state, sink, send_alert, expected_inputs,
                          settings.pause_s)

    async def send_marks() -> None:
        owned = {f"{tp.topic}/{tp.partition}": app.consumer.highwater(tp) for tp in app.consumer.assignment()
                 if tp.topic in settings.input_topics}
        marks = clock.marks({tp: hw for tp, hw in owned.items() if hw is not None})
        if marks:
            value = orjson.dumps({"kind": "marks", "marks": marks})
            for q in range(settings.partitions):
                await scored.send(key=MARKS_KEY, value=value, partition=q)

    @app.agent(inputs)
    async def score(stream):
        async for events in stream.noack_take(settings.max_batch, within=settings.max_wait_s):
            await processor.process([incoming(e) for e in events])
            for e in events:
                await stream.ack(e)
            await send_marks()

    @app.agent(scored)
    async def detect(stream):
        async for event in stream.events():
            msg = orjson.loads(event.value)
            if msg["kind"] == "marks":
                await detection.on_marks(event.message.partition, msg["marks"])
            else:
                await detection.on_counts(event.message.partition, msg)

    @app.timer(interval=1.0)
    async def idle_marks():
        await send_marks()  # idle partitions stop holding the watermark back

    @app.timer(interval=10.0)
    async def outbox_relay():
        """Count records left in the outbox by a crash between commit and publish."""
        stale = await sink.outbox_stale(older_than_s=30.0)
        metrics.OUTBOX_PENDING.set(len(stale))
        for oid, payload in stale:
            await processor.publish_outbox(oid, payload)

    @app.task
    async def partition_upkeep():
        """Daily partitions at start and every hour after (a restarted worker never skips it)."""
        while True:
            try:
                created = await sink.partition_upkeep()
                if created:
                    log.info("partitions created", days=[d.isoformat() for d in created])
            except Exception as exc:  # noqa: BLE001 - counted in metrics, reported, retried next hour
                log.error("partition upkeep failed", error=repr(exc)[:300])
            await asyncio.sleep(3600)

    @app.timer(interval=5.0)
    async def consumer_lag():
        consumer = app.consumer
        for tp in consumer.assignment():
            committed = consumer._committed_offset.get(tp)  # faust keeps no public accessor for this
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, (consumer.highwater(tp) or 0) - (committed or 0)))

    @app.page("/metrics")
    async def metrics_page(self, request):
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split("; charset")[0])

    @app.page("/health")
    async def health(self, request):
        problems = {k: v for k, v in (("postgres", sink.last_error), ("model", processor.health.model_error)) if v}
        body = {"status": "degraded" if problems else "ok", "problems": problems,
                "assigned_partitions": len(app.consumer.assignment()), "late_events": detection.late,
                "watermarks": detection.watermarks()}
        return self.json(body, status=503 if problems else 200)

    @app.service
    class SinkLifecycle(faust.Service):
        async def on_stop(self) -> None:
            await sink.close()

    return app


def load_scorer(settings: Settings) -> Scorer:
    """Load and check the model before consuming: a bad MODEL_DIR or BACKEND stops the worker
    at start with the reason, instead of swallowing the stream."""
    scorer = Scorer.from_artifact(settings.model_dir, settings.backend, settings.precision, device=settings.device,
                                  max_batch=64, threads=settings.ort_threads)
    check = getattr(scorer, "check", None)
    if check is not None:
        check()
    else:
        scorer.predict(["Shares fell after the company cut its outlook."])
    return scorer


def run_worker(settings: Settings, loglevel: str = "WARNING", scorer: Scorer | None = None) -> None:
    """`scorer` is given only by bench/ (a scorer that costs nothing, to measure the streaming
    layer's ceiling); `finsent worker` always loads the model of the settings."""
    from faust.worker import Worker

    from stream.topics import ensure_topics

    logs.configure()
    try:
        t0 = time.perf_counter()
        scorer = scorer or load_scorer(settings)
        log.info("model ready", version=scorer.version, backend=settings.backend, device=settings.device,
                 seconds=round(time.perf_counter() - t0, 2))
    except Exception as exc:  # noqa: BLE001 - any failure to load is fatal, with its reason
        log.error("model failed to load; not consuming", model_dir=str(settings.model_dir), backend=settings.backend,
                  error=f"{type(exc).__name__}: {exc}"[:500])
        sys.exit(3)
    partitions = asyncio.run(ensure_topics(settings))
    expected = frozenset(f"{t}/{p}" for t in settings.input_topics for p in range(partitions[t]))
    app = create_app(settings, scorer, expected)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

