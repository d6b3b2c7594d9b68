"""Issue 17, items 4 and 5, against a real broker and worker: what a later step relies on (count
records, dead letters) is confirmed by Kafka before the outbox row is deleted or the input
acked; when Kafka refuses it the worker stops with the reason and a non-zero status instead of
going on without it, and the next start delivers it: nothing is lost."""

from __future__ import annotations

import asyncio
import subprocess

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from finsent.services import wait_for
from stream.app import EXIT_AGENT_FAILED
from stream.counting import story_weight
from tests.integration.test_pipeline import events

pytestmark = pytest.mark.slow


def topic_max_bytes(stack, topic: str, value: int | None) -> None:
    """Set (or reset to the broker's default) a topic's max.message.bytes."""
    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap)
        await admin.start()
        try:
            configs = {"max.message.bytes": str(value if value is not None else 1048588)}
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
        finally:
            await admin.close()
    asyncio.run(go())


def wait_exit(worker, timeout: float) -> int:
    try:
        return worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running after {timeout} s; log:\n{worker.log_tail()}")


def test_count_records_the_broker_refuses_stop_the_worker_and_are_sent_after_restart(stack):
    s = stack.settings
    topic_max_bytes(stack, s.topic_scored, 120)  # every count record is larger: the broker refuses it
    w = stack.start_worker()
    stack.produce(events(20, 5, prefix="c"))
    assert wait_exit(w, 180) == EXIT_AGENT_FAILED  # went on without its counts before
    log = w.log_path.read_text(errors="replace")
    assert "worker stopping" in log and "not delivered" in log and "TooLarge" in log
    assert stack.rows() == 20
    assert stack.sql("SELECT count(*) FROM detector_outbox")[0][0] >= 1  # kept: deleted only after delivery
    topic_max_bytes(stack, s.topic_scored, None)
    stack.start_worker()
    wait_for(lambda: stack.sql("SELECT count(*) FROM detector_outbox")[0][0] == 0, 120, what="the outbox relayed")
    counts = [orjson.loads(m.value) for m in stack.read_topic(s.topic_scored, expect=10_000, timeout=10)]
    n = sum(c[1] for m in counts if m.get("kind") == "counts" and m["key"].startswith("topic:") for c in m["cells"])
    # every row counted once, none lost: each as much as its story weighs (a copy of a story counts less)
    stored = stack.sql("SELECT story_id, novel, copies FROM scored_event")
    assert n == pytest.approx(sum(story_weight(r) for r in stored)) and stack.rows() == 20


def test_a_dead_letter_the_broker_refuses_is_not_acked_and_arrives_after_restart(stack):
    s = stack.settings
    topic_max_bytes(stack, s.topic_deadletter, 150)
    w = stack.start_worker()
    bad = b"not json, " + b"x" * 400
    stack.produce(events(5, 6, prefix="d") + [bad])
    assert wait_exit(w, 180) == EXIT_AGENT_FAILED  # acked with the dead letter lost before
    assert "dead letters" in w.log_path.read_text(errors="replace")
    topic_max_bytes(stack, s.topic_deadletter, None)
    stack.start_worker()
    dead = stack.read_topic(s.topic_deadletter, expect=1, timeout=120)
    assert [m.value for m in dead] == [bad] and dict(dead[0].headers)["reason"].startswith(b"not JSON")
    stack.wait_rows(5)
    assert stack.rows() == 5
