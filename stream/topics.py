"""Create finsent's topics (idempotent) with the configured partition count."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from core.settings import Settings


async def ensure_topics(settings: Settings, wait_s: float = 60.0) -> dict[str, int]:
    """Create the missing topics; returns the partition count of every topic of finsent (the
    detector's watermark waits for each input partition). Waits up to `wait_s` for the broker."""
    names = [*settings.input_topics, settings.topic_scored, settings.topic_alerts, settings.topic_deadletter]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, num_partitions=settings.partitions, replication_factor=settings.replication) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
        described = await admin.describe_topics(names)
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()
