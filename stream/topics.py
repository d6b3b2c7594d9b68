"""Create finsent's topics (idempotent) with the configured partition count."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from finsent.settings import Settings


async def ensure_topics(settings: Settings) -> list[str]:
    names = [*settings.input_topics, settings.topic_scored, settings.topic_alerts, settings.topic_deadletter]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, num_partitions=settings.partitions, replication_factor=1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()
