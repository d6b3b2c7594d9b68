"""The worker's timers: model pointer, idle marks, outbox relay, upkeep (partitions, history, stories), lag
and stalls."""

from __future__ import annotations

import time

from core import logs
from stream import metrics
from stream.agents import commit_inputs, send_marks
from stream.kafka_compat import committed_offset
from stream.worker import Worker

log = logs.get("finsent.worker")


def register(w: Worker) -> None:
    app, s = w.app, w.settings

    @app.timer(interval=s.model_poll_s)
    async def model_pointer():
        await w.swap.poll()

    @app.timer(interval=1.0)
    async def input_commits():
        await commit_inputs(w)  # what a batch's own commit could not (one in flight, a rebalance)

    @app.timer(interval=1.0)
    async def idle_marks():
        await send_marks(w)  # idle partitions stop holding the watermark back
        w.detection.check()  # a watermark held back too long: finsent_watermark_stalled, an error log

    @app.timer(interval=10.0)
    async def outbox_relay():
        """Count records left in the outbox by a crash between commit and publish."""
        stale = await w.sink.outbox_stale(older_than_s=30.0)
        metrics.OUTBOX_PENDING.set(len(stale))
        for oid, payload in stale:
            try:
                await w.processor.publish_outbox(oid, payload)
            except Exception as exc:  # noqa: BLE001 - the row stays and is sent again at the next run
                log.error("outbox relay could not publish; retried in 10 s", outbox_id=oid, error=repr(exc)[:300])
                break

    @app.task
    async def upkeep():
        """At start and every hour after (a restarted worker never skips it): daily partitions,
        raw history past retention, the stories index past its horizon (stream.lifecycle)."""
        await w.upkeep.run_forever()

    @app.timer(interval=5.0)
    async def consumer_lag():
        consumer, positions, now = app.consumer, {}, time.monotonic()
        assigned = consumer.assignment()
        for tp in assigned:
            committed = committed_offset(consumer, tp)
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, (consumer.highwater(tp) or 0) - (committed or 0)))
            if tp.topic in s.input_topics or tp.topic == s.topic_scored:  # the detector's input too
                positions[f"{tp.topic}/{tp.partition}"] = (committed, consumer.highwater(tp))
        metrics.UNASSIGNED.set(1 if w.unassigned_problem(now) else 0)
        stalled = w.stall_watch.observe(positions, now)
        metrics.STALLED.set(len(stalled))
        if stalled:
            log.error("input partitions not progressing", stalled=stalled)
