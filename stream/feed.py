"""Producers for the input topics: `finsent replay FILE --rate N` and `finsent simulate`."""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from models.data import DataError, csv_records
from models.predict_file import bad_bytes, byte_lines, detect_format, field_limit, open_text

SOCIAL = {"social-x", "forum", "stocktwits", "reddit", "twitter", "x"}


def topic_for(event: dict, news: str, social: str) -> str:
    return social if str(event.get("source", "")).lower() in SOCIAL else news


MAX_MESSAGE_BYTES = 1_048_576  # aiokafka's max_request_size: a longer message cannot be sent


def file_events(path: Path, fmt: str | None = None) -> list[dict | bytes]:
    """JSONL lines are sent as they are (bytes, so bad lines reach the dead-letter topic; blank
    lines skipped; a UTF-8 BOM dropped, UTF-16/32 re-encoded as UTF-8); CSV rows become JSON
    objects of their columns. Refused (DataError naming the line) before anything is sent: a file
    with no events, a line too long for one Kafka message, a CSV file that is not UTF-8, a CSV
    record with more or fewer fields than the header or with a quoted field never closed."""
    if detect_format(path, fmt) == "jsonl":
        events: list[dict | bytes] = []
        for n, line in enumerate(byte_lines(path), 1):
            if len(line) > MAX_MESSAGE_BYTES:
                raise DataError(f"{path}:{n}: {len(line):,} bytes; a Kafka message holds at most {MAX_MESSAGE_BYTES:,}")
            if line.strip():
                events.append(line)
    else:
        events = list(_csv_events(path))
    if not events:
        raise DataError(f"{path}: no events in the file")
    return events


def _csv_events(path: Path):
    with open_text(path) as f, field_limit():
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise DataError(f"{path}:1: malformed CSV ({exc})") from None
        if not header:
            return
        for start, row, err in csv_records(reader):
            if err is not None:
                raise DataError(f"{path}:{start}: malformed CSV ({err})")
            if any(bad_bytes(v) for v in row):
                raise DataError(f"{path}:{start}: not valid UTF-8; re-encode the file as UTF-8")
            if len(row) != len(header):
                raise DataError(f"{path}:{start}: {len(row)} fields, the header has {len(header)}")
            event = dict(zip(header, row))
            if len(orjson.dumps(event)) > MAX_MESSAGE_BYTES:
                raise DataError(f"{path}:{start}: the event is over {MAX_MESSAGE_BYTES:,} bytes, "
                                "more than a Kafka message holds")
            yield event


async def produce(bootstrap: str, events: Iterable[dict | bytes], news: str, social: str, rate: float = 0.0,
                  progress=None, total: int | None = None) -> int:
    """Send events keyed by their source id; `rate` msgs/s (0 = as fast as possible)."""
    # idempotent: a retried batch (a new topic's leader not ready yet) cannot land behind later ones
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", enable_idempotence=True)
    try:
        await producer.start()
    except BaseException:  # no broker: close the half-started client (no "Unclosed AIOKafkaProducer")
        await producer.stop()
        raise
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
