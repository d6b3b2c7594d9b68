"""Sending what a later step relies on, and stopping when that cannot be done.

Topic.send only queues: `delivered` waits for the broker's acknowledgement of every record
(acks=all) within a bound, before the outbox row is deleted, the input acked or the detector's
state saved. An agent that cannot go on stops the worker (exit 70) with its reason; a supervisor
restarts it and it resumes from the committed offsets (FAUST-NOTES: Faust would restart the agent
in place over a gap).
"""

from __future__ import annotations

import asyncio
import os
import sys

from core import logs
from stream.pipeline import Dead

log = logs.get("finsent.worker")


EXIT_AGENT_FAILED = 70  # the worker's exit status when an agent cannot go on (see stop_worker)


class DeliveryFailed(RuntimeError):
    """Kafka did not confirm a record that a later step relies on."""


async def delivered(topic, records: list[dict], timeout_s: float, what: str) -> list:
    """Send `records` (Topic.send keyword arguments) and wait until the broker has every one (its
    RecordMetadata): Topic.send only queues, and a later delivery failure would only be logged.
    Raises DeliveryFailed after `timeout_s` or on the first failure."""
    async def go():
        return await asyncio.gather(*[await topic.send(**r) for r in records])
    try:
        return await asyncio.wait_for(go(), timeout_s)
    except asyncio.TimeoutError:
        raise DeliveryFailed(f"{len(records)} {what} to {topic.get_topic_name()} not delivered within "
                             f"{timeout_s:.0f} s") from None
    except Exception as exc:  # noqa: BLE001 - every failure to deliver is the same fact for the caller
        raise DeliveryFailed(f"{what} to {topic.get_topic_name()} not delivered: {type(exc).__name__}: {exc}"[:500]) from exc


def stop_worker(where: str, exc: BaseException) -> None:
    """An agent that cannot go on stops the process with the reason and a non-zero status.

    Faust would restart the agent in place on the same stream: the batches it had taken are not
    delivered again and the consumer later commits past them (a silent skip), or it waits on
    them for ever (a stall with /health 200). Exiting commits nothing more; the next start (a
    supervisor restarts the worker) re-reads from the committed offsets and the idempotent
    writes absorb what was already stored."""
    log.critical("worker stopping: an agent cannot go on; the input after the committed offsets is re-read at "
                 "the next start", where=where, error=f"{type(exc).__name__}: {exc}"[:1000], exit_status=EXIT_AGENT_FAILED)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(EXIT_AGENT_FAILED)


async def agent_failed(agent, exc: BaseException) -> None:
    """Faust's on_error hook of every agent: stop instead of a restart over a gap."""
    stop_worker(f"agent {getattr(agent, 'name', agent)}", exc)


class FaustPublisher:
    def __init__(self, deadletter, scored, timeout_s: float = 60.0):
        self.deadletter, self.scored, self.timeout_s = deadletter, scored, timeout_s

    async def dead(self, dead: list[Dead]) -> None:
        if dead:
            await delivered(self.deadletter, [{"key": d.item.key, "value": d.item.value, "headers": d.headers()}
                                              for d in dead], self.timeout_s, "dead letters")

    async def counts(self, records: list[tuple[str, bytes]]) -> None:
        if records:
            await delivered(self.scored, [{"key": key.encode(), "value": value} for key, value in records],
                            self.timeout_s, "count records")
