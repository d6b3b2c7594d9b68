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
import os
import sys
import tempfile
import time
from pathlib import Path

import faust
import orjson
from faust.transport.drivers import aiokafka as faust_kafka
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import logs
from core.masking import Masker
from core.settings import Settings
from models.runtime import Scorer
from stream import metrics
from stream.detection import Detection
from stream.detector import DetectorConfig, SpikeDetector
from stream.hotswap import worker_swap
from stream.pipeline import BatchProcessor, Dead, Incoming
from stream.progress import StallWatch
from stream.sink import PostgresSink
from stream.watermark import PartitionClock

log = logs.get("finsent.worker")
MARKS_KEY = b"~marks"



class FetchGuard:
    """Record batches the consumer cannot read (a codec it lacks, a corrupt batch): Faust lets
    the error out of the fetcher and the worker exits, and aiokafka, retried, silently skips
    the good records fetched ahead of the bad batch. Like the Java consumer, the partition is
    instead held at the batch (never skipped: nothing is lost, offsets do not pass it) while
    every other partition goes on; it is reported (log, `finsent_fetch_errors_total`,
    `finsent_partitions_held`, /health 503 with the offset) and retried every `retry_s`. A
    held partition holds the event-time watermark back: no data is assumed absent. To skip a
    truly corrupt batch, an operator moves the group's offset past it."""

    def __init__(self, retry_s: float = 30.0):
        self.retry_s = retry_s
        self.held: dict = {}  # tp -> {"offset", "error", "since", "retry_at", "prefix": good records before it}

    def problem(self) -> str:
        return "; ".join(f"{tp.topic}/{tp.partition} held at offset {h['offset']}: {h['error']}"
                         for tp, h in list(self.held.items()))

    async def fetch(self, fetcher, assigned: set, active, timeout: float, max_records) -> dict:
        """aiokafka's fetched_records, one partition at a time: its own call drops the records
        it drained from other partitions when one partition's batch raises."""
        for tp in [tp for tp in self.held if tp not in assigned]:  # revoked: its new owner reports it
            del self.held[tp]
        wanted = set(assigned if active is None else active)
        deadline = time.monotonic() + (timeout or 0)
        while True:
            out, room, now = {}, max_records, time.monotonic()
            for tp in [tp for tp in list(fetcher._records) if tp in wanted]:
                h = self.held.get(tp)
                if h and h["prefix"] <= 0 and now < h["retry_at"]:
                    continue  # held at the batch it cannot read
                limit = h["prefix"] if h and h["prefix"] > 0 else room  # ahead of the bad batch: no further
                if room is not None:
                    limit = min(limit, room)
                got = await self._guarded(fetcher, tp, limit)
                if got:
                    out[tp] = got
                    if h and h["prefix"] > 0:
                        h["prefix"] -= len(got)
                    elif h:  # read past the batch on a retry: it was repaired
                        log.warning("partition readable again", topic=tp.topic, partition=tp.partition)
                        del self.held[tp]
                if room is not None and (room := room - len(got)) <= 0:
                    break
            metrics.PARTITIONS_HELD.set(len(self.held))
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            waiter = fetcher._create_fetch_waiter()  # as fetched_records waits for new data
            done, pending = await asyncio.wait([waiter], timeout=left)
            for fut in pending:
                fut.cancel()
            if not done or fetcher._closed:
                return {}
            waiter.result()

    async def _guarded(self, fetcher, tp, max_records) -> list:
        try:
            return (await fetcher.fetched_records({tp}, timeout=0, max_records=max_records)).get(tp, [])
        except Exception as exc:
            r = fetcher._records.get(tp)
            it = getattr(getattr(r, "_partition_records", None), "_records_iterator", None)
            if it is None or it.gi_frame is not None:
                raise  # not a record batch it could not read (its iterator died of it): Faust's to handle
            position = r._assignment.state_value(tp).position
            offset = r._partition_records.next_fetch_offset
            del fetcher._records[tp]  # refetched from `position`: nothing skipped
            fetcher._notify(fetcher._wait_consume_future)
            text = str(exc)
            error = (text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}")[:300]
            first = tp not in self.held
            self.held[tp] = {"offset": offset, "error": error, "since": self.held.get(tp, {}).get("since", time.time()),
                             "retry_at": time.monotonic() + self.retry_s, "prefix": max(0, offset - position)}
            metrics.FETCH_ERRORS.labels(tp.topic, type(exc).__name__).inc()
            metrics.PARTITIONS_HELD.set(len(self.held))
            (log.error if first else log.warning)(
                f"cannot read a record batch; partition held (not skipped), retried every {self.retry_s:.0f} s",
                topic=tp.topic, partition=tp.partition, offset=offset, error=error)
            return []


def guarded_transport(guard: FetchGuard):
    """Faust's aiokafka transport whose consumer thread fetches through `guard`."""

    class Thread(faust_kafka.AIOKafkaConsumerThread):
        async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
            if not self.consumer.flow_active:
                return {}
            fetcher = consumer._fetcher
            if consumer._closed or fetcher._closed:
                raise faust_kafka.ConsumerStoppedError()
            with fetcher._subscriptions.fetch_context():
                return await guard.fetch(fetcher, consumer.assignment(), active_partitions, timeout, max_records)

    class Consumer(faust_kafka.Consumer):
        """Faust's consumer, fetching through `guard`, with seeks that cannot lose records.

        In a rebalance with a table to recover, Faust resumes the flow for the changelogs, then
        seeks the input partitions back to their committed offsets and clears the stream
        buffers. Records fetched before that seek kept flowing after it and moved Faust's read
        offset past the seek; the re-fetched records below it were then dropped as "already
        read", while the ones cleared from the buffers were never processed: a gap that the
        committed offset never passes (found with two workers and a kill -9; lag stuck for
        good, rows missing). Here no fetch starts while a seek runs, records fetched before a
        seek are not delivered after it, and the read offsets a late record moved are put back
        to where the seek left them; a partition with no committed offset, which aiokafka's
        seek_to_committed leaves where its fetcher was, is sought to its start. What is re-read
        is absorbed by the idempotent insert."""

        _seek_epoch = 0
        _seek_done: asyncio.Event | None = None
        _seek_offsets: dict = {}

        def _new_consumer_thread(self):
            return Thread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            if self._seek_done is None:
                self._seek_done = asyncio.Event()
            self._seek_epoch += 1
            self._seek_done.clear()
            try:
                await super().perform_seek()
                for tp in self.assignment():
                    # aiokafka's seek_to_committed leaves a partition with no committed offset (or 0)
                    # where its fetcher was: seek it to the start, as auto_offset_reset=earliest means
                    if self.app.topics.acks_enabled_for(tp.topic) and not self._read_offset.get(tp):
                        await self.seek(tp, 0)
                self._seek_offsets = dict(self._read_offset)
            finally:
                self._seek_done.set()

        async def getmany(self, timeout: float):
            if self._seek_done is not None:
                await self._seek_done.wait()
            epoch = self._seek_epoch
            async for tp, message in super().getmany(timeout):
                if self._seek_epoch != epoch:
                    break
                yield tp, message
            if self._seek_epoch != epoch:
                assigned = self.assignment()
                self._read_offset.update({tp: o for tp, o in self._seek_offsets.items() if tp in assigned})
                log.info("records fetched before a seek were not delivered; re-reading from the committed offsets")

    return type("GuardedTransport", (faust_kafka.Transport,), {"Consumer": Consumer})


def detector_config(s: Settings) -> DetectorConfig:
    return DetectorConfig(slice_s=s.slice_s, window_s=s.window_s, min_count=s.detector_min_count,
                          p_threshold=s.detector_p, warmup_s=s.detector_warmup_s, cooldown_s=s.detector_cooldown_s,
                          pause_s=s.pause_s, lateness_s=s.lateness_s)


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
    faust_root = os.path.join(tempfile.gettempdir(), "finsent-faust")
    os.makedirs(faust_root, exist_ok=True)
    app = faust.App(
        settings.consumer_group, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
        autodiscover=False, topic_partitions=settings.partitions, topic_replication_factor=1,
        consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
        web_bind=settings.web_host, web_port=settings.web_port, web_enabled=True,
        broker_commit_interval=1.0, producer_linger=0.005,
        # tables live in memory (state is rebuilt from changelogs); keep Faust's empty data dir out of the CWD
        datadir=os.path.join(faust_root, "{conf.id}"),
    )
    guard = FetchGuard()
    app.transport = guarded_transport(guard)(app.conf.broker_consumer, app)
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

    swap = worker_swap(settings.model_dir, processor, lambda d: load_scorer(settings, d))

    @app.timer(interval=settings.model_poll_s)
    async def model_pointer():
        await swap.poll()

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

    async def store_and_ack(stream, batch, events) -> None:
        await processor.store(batch)
        for e in events:
            await stream.ack(e)
        await send_marks()

    @app.agent(inputs)
    async def score(stream):
        # two batches in flight at most: batch N+1 is scored while batch N is stored; stores run
        # one at a time, in order, and a batch is acked only after its store returned
        storing = None
        try:
            async for events in stream.noack_take(settings.max_batch, within=settings.max_wait_s):
                batch = await processor.score([incoming(e) for e in events])
                if storing is not None:
                    await storing
                storing = asyncio.ensure_future(store_and_ack(stream, batch, events))
            if storing is not None:
                await storing
        except asyncio.CancelledError:
            if storing is not None:
                storing.cancel()  # unacked: read again from the committed offset, absorbed by the insert
            raise

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

    stall_watch = StallWatch(settings.stall_s)

    @app.timer(interval=5.0)
    async def consumer_lag():
        consumer, positions = app.consumer, {}
        for tp in consumer.assignment():
            committed = consumer._committed_offset.get(tp)  # faust keeps no public accessor for this
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, (consumer.highwater(tp) or 0) - (committed or 0)))
            if tp.topic in settings.input_topics:
                positions[f"{tp.topic}/{tp.partition}"] = (committed, consumer.highwater(tp))
        stalled = stall_watch.observe(positions, time.monotonic())
        metrics.STALLED.set(len(stalled))
        if stalled:
            log.error("input partitions not progressing", stalled=stalled)

    @app.page("/metrics")
    async def metrics_page(self, request):
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split("; charset")[0])

    @app.page("/health")
    async def health(self, request):
        problems = {k: v for k, v in (("postgres", sink.last_error), ("model", processor.health.model_error),
                                      ("fetch", guard.problem()),
                                      ("stalled", stall_watch.problem())) if v}
        body = {"status": "degraded" if problems else "ok", "problems": problems,
                "assigned_partitions": len(app.consumer.assignment()), "late_events": detection.late,
                "watermarks": detection.watermarks(), "model": swap.state()}
        return self.json(body, status=503 if problems else 200)

    @app.service
    class SinkLifecycle(faust.Service):
        async def on_stop(self) -> None:
            await sink.close()

    return app


def load_scorer(settings: Settings, directory: Path | None = None) -> Scorer:
    """Load and check the model before consuming: a bad MODEL_DIR or BACKEND stops the worker
    at start with the reason, instead of swallowing the stream. (`directory`: a hot swap's.)"""
    scorer = Scorer.from_artifact(directory or settings.model_dir, settings.backend, settings.precision,
                                  device=settings.device, max_batch=64, threads=settings.ort_threads)
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

