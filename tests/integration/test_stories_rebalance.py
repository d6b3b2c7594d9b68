"""Issue 20, the rebalance stall: the survivor of a two-worker rebalance (tests/integration/
test_detect_rebalance.py) stopped for good, every stream paused, Faust's Recovery logging "No event
received for active tp ... detector-state-changelog" for the changelog partitions the leaving worker
had held. Not the stories' advisory lock (Postgres showed no lock held and no transaction open at the
stall): Recovery had sought those partitions to where it must read them from, a fetch that was
already waiting returned their records while the rebalance still held the flow stopped, Faust's
getmany dropped them, and nothing seeks a changelog partition back (an input partition is sought to
its committed offset). With stories on, a busier event loop made the window wide enough to hit.

Here, on the real broker, the consumer thread's fetch of the worker's transport
(stream.kafka_compat.guarded_transport) is driven as in that rebalance: records that arrive while
the flow is stopped must not be handed on, and must be read again once it resumes."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stream.kafka_compat import FetchGuard, guarded_transport

pytestmark = pytest.mark.slow


async def _fetch_until(thread, consumer, n: int, timeout_s: float) -> list[int]:
    """Offsets fetched with the flow running, until `n` or the bound."""
    loop, out = asyncio.get_running_loop(), []
    deadline = loop.time() + timeout_s
    while len(out) < n and loop.time() < deadline:
        got = await thread._fetch_records(consumer, None, timeout=0.5)
        out += [r.offset for rs in got.values() for r in rs]
    return out


async def _records_during_a_stopped_flow(bootstrap: str) -> tuple[dict, list[int]]:
    topic = f"stall-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        await producer.send_and_wait(topic, b"before", partition=0)  # the topic exists; the reader starts after it
        await consumer.start()
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        thread = object.__new__(guarded_transport(FetchGuard()).Thread)  # only its fetch is driven
        thread.consumer = SimpleNamespace(flow_active=True)
        waiting = asyncio.ensure_future(thread._fetch_records(consumer, None, timeout=10.0))
        await asyncio.sleep(0.5)  # the fetch waits for records
        thread.consumer.flow_active = False  # a rebalance stops the flow
        for i in range(10):  # what Recovery must read arrives meanwhile
            await producer.send_and_wait(topic, f"r{i}".encode(), partition=0)
        during = await asyncio.wait_for(waiting, 15)
        thread.consumer.flow_active = True  # Recovery resumes the flow
        return during, await _fetch_until(thread, consumer, 10, 20)
    finally:
        await consumer.stop()
        await producer.stop()


def test_records_fetched_while_the_flow_is_stopped_are_read_again_once_it_resumes(kafka):
    during, after = asyncio.run(_records_during_a_stopped_flow(kafka.bootstrap))
    # Faust delivers nothing while the flow is stopped: whatever this returned would be dropped
    assert during == {}, f"handed on while the flow was stopped (Faust drops these): {during}"
    assert after == list(range(1, 11)), f"records lost across the stopped flow: read {after} after it resumed"
