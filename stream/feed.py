"""Producers for the input topics: `finsent replay FILE --rate N` and `finsent simulate`."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from models.data import read_bytes, read_text
from models.predict_file import detect_format

SOCIAL = {"social-x", "forum", "stocktwits", "reddit", "twitter", "x"}


def topic_for(event: dict, news: str, social: str) -> str:
    return social if str(event.get("source", "")).lower() in SOCIAL else news


def file_events(path: Path, fmt: str | None = None) -> list[dict | bytes]:
    """JSONL lines are sent as they are (bytes, so bad lines reach the dead-letter topic);
    CSV rows become JSON objects of their columns."""
    if detect_format(path, fmt) == "jsonl":
        return [line for line in read_bytes(path).splitlines() if line.strip()]
    return [dict(r) for r in csv.DictReader(io.StringIO(read_text(path), newline=""))]


async def produce(bootstrap: str, events: Iterable[dict | bytes], news: str, social: str, rate: float = 0.0,
                  progress=None, total: int | None = None) -> int:
    """Send events keyed by their source id; `rate` msgs/s (0 = as fast as possible)."""
    # idempotent: a retried batch (a new topic's leader not ready yet) cannot land behind later ones
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", enable_idempotence=True)
    await producer.start()
    task = progress.add_task("producing", total=total) if progress else None
    sent, t0 = 0, time.perf_counter()
    try:
        for ev in events:
            if isinstance(ev, bytes):
                value, key, topic = ev, None, news
                try:
                    obj = orjson.loads(ev)
                    key, topic = str(obj.get("id", "")).encode(), topic_for(obj, news, social)
                except (orjson.JSONDecodeError, AttributeError):  # not JSON / not an object: sent as is,
                    pass  # and the worker dead-letters it with the reason
            else:
                value, key, topic = orjson.dumps(ev), str(ev.get("id", "")).encode(), topic_for(ev, news, social)
            await producer.send(topic, value, key=key)
            sent += 1
            if progress is not None and sent % 100 == 0:
                progress.update(task, completed=sent)
            if rate > 0 and (ahead := sent / rate - (time.perf_counter() - t0)) > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    if progress is not None:
        progress.update(task, completed=sent)
    return sent
