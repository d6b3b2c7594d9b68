"""The Faust app: `finsent worker` runs it. Agents stay a few lines; the work is in plain
objects (stream.pipeline.BatchScorer, stream.detector.SpikeDetector, stream.sink.PostgresSink).

  score:  input bytes → validate (bad → finsent.deadletter with reason headers) → take_events
          batch → one runtime call (in a thread) → Postgres (idempotent, retried) → finsent.scored.
          take_events acks a batch only after the loop body returns, i.e. after the write:
          offsets never move past a row that is not in Postgres.
  detect: finsent.scored (keyed by aggregation key) → detector state in a changelog-backed
          table → alerts to Postgres and finsent.alerts.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import asdict
from datetime import datetime

import asyncpg
import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import logs
from core.pg import ensure_partitions
from core.settings import Settings
from models.runtime import Scorer
from stream import metrics
from stream.detector import Decision, DetectorConfig, KeyState, SpikeDetector
from stream.pipeline import BatchScorer, Incoming
from stream.records import AlertRecord, Scored
from stream.sink import PostgresSink
from stream.sink import ts as utc

log = logs.get("finsent.worker")


def detector_config(s: Settings) -> DetectorConfig:
    return DetectorConfig(window_s=s.window_s, min_count=s.detector_min_count, p_threshold=s.detector_p,
                          warmup_windows=s.detector_warmup_windows, cooldown_windows=s.detector_cooldown_windows,
                          lateness_windows=s.detector_lateness_windows)


def incoming(event) -> Incoming:
    m = event.message
    return Incoming(m.value, m.key, m.topic, m.partition, m.offset)


def alert_record(d: Decision) -> AlertRecord:
    """The wire form of a detector decision: same evidence, UTC ISO times, split key."""
    fields = asdict(d)
    action, (key_type, key) = fields.pop("action"), fields.pop("key").split(":", 1)
    fields.update(window_start=utc(d.window_start).isoformat(), window_end=utc(d.window_end).isoformat(),
                  sample_event_ids=list(d.sample_event_ids))
    return AlertRecord(state="open" if action == "open" else "resolved", key_type=key_type, key=key, **fields)


def create_app(settings: Settings, scorer: Scorer | None = None) -> faust.App:
    app = faust.App(
        settings.consumer_group, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
        autodiscover=False, topic_partitions=settings.partitions, topic_replication_factor=1,
        consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
        web_bind=settings.web_host, web_port=settings.web_port, web_enabled=True,
        broker_commit_interval=1.0, producer_linger=0.005,
    )
    inputs = app.topic(*settings.input_topics, value_type=bytes, value_serializer="raw", key_serializer="raw")
    deadletter = app.topic(settings.topic_deadletter, value_serializer="raw", key_serializer="raw")
    scored = app.topic(settings.topic_scored, key_type=str, value_type=Scored, partitions=settings.partitions)
    alerts = app.topic(settings.topic_alerts, key_type=str, value_type=AlertRecord)
    state = app.Table("detector-state", default=dict, partitions=settings.partitions)
    sink = PostgresSink(settings.asyncpg_dsn)
    detector = SpikeDetector(detector_config(settings))
    @functools.cache
    def batch_scorer() -> BatchScorer:  # the model loads in the worker on first use, not at import
        s = scorer or Scorer.from_artifact(settings.model_dir, settings.backend, settings.precision,
                                           max_batch=64, threads=settings.ort_threads)
        return BatchScorer(s, settings.max_text_chars, settings.dedup_window)

    @app.agent(inputs)
    async def score(stream):
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.max_batch, within=settings.max_wait_s):
            good, dead = batch_scorer().prepare([incoming(e) for e in events])
            for d in dead:
                metrics.DEADLETTERED.labels(metrics.reason_kind(d.reason)).inc()
                await deadletter.send(key=d.item.key, value=d.item.value, headers=d.headers())
            out = await loop.run_in_executor(None, batch_scorer().score, good)
            await sink.write_events(out.rows)
            metrics.SCORED.inc(len(out.rows))
            for key, rec in out.records:
                scored.send_soon(key=key, value=rec)  # buffered; flushed before offsets commit

    @app.agent(scored)
    async def detect(stream):
        async for key, rec in stream.items():
            st = KeyState.from_dict(state[key])
            ts = datetime.fromisoformat(rec.published_at).timestamp()
            decisions = detector.observe(st, key, ts, rec.sentiment == "negative", f"{rec.source}/{rec.id}",
                                         tuple(rec.tickers))
            state[key] = st.to_dict()
            for d in decisions:
                await sink.write_decision(d)
                metrics.ALERTS.labels(d.action).inc()
                await alerts.send(key=key, value=alert_record(d))
                log.info("alert", action=d.action, key=key, n=d.n, negatives=d.negatives, z=d.z)

    @app.timer(interval=3600.0)
    async def partitions_ahead():
        """Daily scored_event partitions a week ahead (the migration made the first ones)."""
        try:
            await sink.retrying("partitions", ensure_partitions)
        except asyncpg.PostgresError as exc:  # e.g. another worker created the same one just now
            log.warning("partition upkeep failed", error=str(exc)[:200])

    @app.timer(interval=5.0)
    async def consumer_lag():
        consumer = app.consumer
        for tp in consumer.assignment():
            committed = consumer._committed_offset.get(tp)  # faust keeps no public accessor for this
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, consumer.highwater(tp) - (committed or 0)))

    @app.page("/metrics")
    async def metrics_page(self, request):
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split("; charset")[0])

    @app.page("/health")
    async def health(self, request):
        status = 200 if sink.up else 503
        return self.json({"status": "ok" if sink.up else "degraded", "postgres": "up" if sink.up else sink.last_error,
                          "assigned_partitions": len(app.consumer.assignment())}, status=status)

    @app.service
    class SinkLifecycle(faust.Service):
        async def on_stop(self) -> None:
            await sink.close()

    return app


def run_worker(settings: Settings, loglevel: str = "WARNING") -> None:
    from faust.worker import Worker

    from stream.topics import ensure_topics

    logs.configure()
    asyncio.run(ensure_topics(settings))
    app = create_app(settings)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
