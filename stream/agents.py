"""The worker's two agents, a few lines each; the work is in BatchProcessor and Detection.

  score:  input bytes → noack_take batch → BatchProcessor.score, then .store (rows + rollups +
          count records in one transaction, dead letters confirmed) → done → commit of the input
          offsets below which every message is done (stream.commits; Faust commits no input
          offset) → event-time marks to every partition of finsent.scored. Two batches in flight at most: batch N+1 is scored
          while batch N is stored; a batch is acked only after its store returned.
  detect: finsent.scored (counts keyed by aggregation key, plus marks) → Detection → alerts to
          Postgres (alert, alert_event) and finsent.alerts.
"""

from __future__ import annotations

import asyncio

from stream.delivery import agent_failed, stop_worker
from stream.kafka_compat import committed_offset, set_on_error
from stream.pipeline import Incoming
from stream.records import Marks, decode_scored
from stream.worker import Worker

MARKS_KEY = Marks.KEY


def incoming(event) -> Incoming:
    m = event.message
    return Incoming(m.value, m.key, m.topic, m.partition, m.offset, (m.timestamp or 0) / 1000 or None)


async def send_marks(w: Worker) -> None:
    """Each owned input partition's mark: its high watermark and the group's committed offset tell
    whether it was processed up to its end (by this process or one before it); silent, it is idle."""
    consumer, owned, committed = w.app.consumer, {}, {}
    for tp in consumer.assignment():
        if tp.topic in w.settings.input_topics and (hw := consumer.highwater(tp)) is not None:
            name = f"{tp.topic}/{tp.partition}"
            owned[name], committed[name] = hw, committed_offset(consumer, tp)
    marks = w.clock.marks(owned, committed)
    if marks:
        value = Marks(marks).encode()
        for q in range(w.settings.partitions):
            await w.scored.send(key=MARKS_KEY, value=value, partition=q)


async def commit_inputs(w: Worker) -> None:
    """Commit the input offsets whose messages are all stored or dead-lettered (bounded; a failure
    is logged, counted and retried at the next batch or the next second)."""
    await w.app.consumer.commit_inputs(timeout_s=min(10.0, w.settings.kafka_send_timeout_s))


def register(w: Worker) -> None:
    app, processor, detection = w.app, w.processor, w.detection

    async def store_and_ack(stream, batch, events) -> None:
        await processor.store(batch)
        w.stored_once = True
        consumer = app.consumer
        for e in events:
            consumer.done(e.message.tp, e.message.offset)  # stored or dead-lettered: committable (stream.commits)
            await stream.ack(e)
        await commit_inputs(w)
        await send_marks(w)

    def stop_if_failed(task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            stop_worker("agent score (storing a batch)", task.exception())

    @app.agent(w.inputs)
    async def score(stream):
        storing = None
        try:
            async for events in stream.noack_take(w.settings.max_batch, within=w.settings.max_wait_s):
                batch = await processor.score([incoming(e) for e in events])
                if storing is not None:
                    await storing
                storing = asyncio.ensure_future(store_and_ack(stream, batch, events))
                storing.add_done_callback(stop_if_failed)  # now, not when the next batch comes
            if storing is not None:
                await storing
        except asyncio.CancelledError:
            if storing is not None:
                storing.cancel()  # unacked: read again from the committed offset, absorbed by the insert
            raise
        except BaseException as exc:  # noqa: BLE001 - a PanicException is not an Exception: Faust would not see it
            stop_worker("agent score", exc)

    @app.agent(w.scored)
    async def detect(stream):
        generation = None
        async for event in stream.events():
            if app.consumer_generation_id != generation:  # a rebalance: rebuild from the restored table
                generation = app.consumer_generation_id
                detection.reassigned({tp.partition for tp in app.consumer.assignment()
                                      if tp.topic == w.settings.topic_scored})
            record = decode_scored(event.value)  # Invalid (not ours) stops the worker with the reason
            if isinstance(record, Marks):
                await detection.on_marks(event.message.partition, record.marks)
            else:
                await detection.on_counts(event.message.partition, record)

    for agent in (score, detect):  # one that raises stops the worker; Faust would restart it in place over a gap
        set_on_error(agent, agent_failed)
