"""Everything finsent does with faust-streaming's and aiokafka's private internals, in one place.

Written and tested against faust-streaming 0.15.3 and aiokafka 0.14.0 (PINNED below;
tests/test_kafka_compat.py fails when the installed versions differ, so that an upgrade re-reads
this module instead of trusting it):

- FetchGuard + guarded_transport: the consumer thread's fetch (aiokafka Fetcher._records,
  _create_fetch_waiter, _notify, the partition records' iterator) and Faust's Consumer seek path
  (perform_seek, getmany, _read_offset);
- committed_offset: Faust's Consumer._committed_offset, which has no public accessor;
- set_on_error: Faust's Agent._on_error (App.agent always passes the app's own handler, which
  logs and lets the supervisor restart the agent in place);
- the input topics' own commits (stream.commits.InputOffsets): the input topic is declared with
  acks=False so that Faust neither acks, gap-fills nor commits it; the consumer records what it
  delivers since each seek and commits through aiokafka in Faust's consumer thread
  (ConsumerThread.call_thread, AIOKafkaConsumerThread._ensure_consumer), keeping Faust's
  Consumer._committed_offset (read by the marks, the lag and the stall watch) up to date.
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

from aiokafka.errors import (CommitFailedError, IllegalGenerationError, RebalanceInProgressError,
                             UnknownMemberIdError)
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as KafkaTP
from faust.transport.drivers import aiokafka as faust_kafka

from core import logs
from stream import metrics
from stream.commits import InputOffsets

log = logs.get("finsent.worker")
PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def installed_versions() -> dict[str, str]:
    return {name: version(name) for name in PINNED}


def set_on_error(agent, handler) -> None:
    """Faust awaits `handler(agent, exc)` when the agent raises (before its in-place restart)."""
    agent._on_error = handler


def committed_offset(consumer, tp) -> int | None:
    """The group's committed offset of `tp` as this consumer knows it (None: nothing committed)."""
    return consumer._committed_offset.get(tp)


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


def put_back(consumer, records: dict) -> None:
    """Seek each partition back to its first record fetched: they are read again, not lost.

    A fetch waits up to its timeout for records; when a rebalance stops the flow meanwhile, Faust's
    getmany drops what the fetch returns (it delivers nothing while the flow is stopped). An input
    partition is sought to its committed offset afterwards, but a changelog partition is not: Recovery
    seeks it to where it must start reading, and when the waiting fetch returned the records from that
    very position before Recovery resumed the flow (its seek awaits the consumer thread; a busy event
    loop widens the window), they were dropped and the partition went on after them. Recovery then
    waited for ever for records it would never see: every stream paused, the survivor of a two-worker
    rebalance stalled (issue 20). Records fetched while the flow is stopped are put back instead."""
    assigned = consumer.assignment()
    for tp, got in records.items():
        if got and tp in assigned:  # a partition revoked meanwhile is its new owner's to read
            consumer.seek(tp, got[0].offset)


REFUSED_IN_REBALANCE = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError)


def guarded_transport(guard: FetchGuard, own_commits: frozenset[str] = frozenset()):
    """Faust's aiokafka transport whose consumer thread fetches through `guard`; the topics in
    `own_commits` (declared acks=False) are committed by `Consumer.commit_inputs` only."""

    class Thread(faust_kafka.AIOKafkaConsumerThread):
        async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
            if not self.consumer.flow_active:
                return {}
            fetcher = consumer._fetcher
            if consumer._closed or fetcher._closed:
                raise faust_kafka.ConsumerStoppedError()
            with fetcher._subscriptions.fetch_context():
                records = await guard.fetch(fetcher, consumer.assignment(), active_partitions, timeout, max_records)
            if records and not self.consumer.flow_active:
                put_back(consumer, records)
                return {}
            return records

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
        input_offsets: InputOffsets | None = None
        _commit_lock: asyncio.Lock | None = None

        def _own(self, tp) -> bool:
            return tp.topic in own_commits

        def _offsets(self) -> InputOffsets:
            if self.input_offsets is None:
                self.input_offsets = InputOffsets(on_gap=self._on_gap)
            return self.input_offsets

        def _on_gap(self, tp, missing: int, delivered: int, reread: bool) -> None:
            if reread:
                metrics.OFFSET_GAPS.labels(tp.topic, "read again").inc()
                log.warning("input records not delivered before a later one; reading the partition again from the "
                            "first one missing", topic=tp.topic, partition=tp.partition, first_missing=missing,
                            next_delivered=delivered)
            else:
                metrics.OFFSET_GAPS.labels(tp.topic, "not in the log").inc()
                log.info("input offsets not in the log (read again from the first, the log starts after them)",
                         topic=tp.topic, partition=tp.partition, first_missing=missing, next_delivered=delivered)

        async def on_partitions_revoked(self, revoked) -> None:
            self._offsets().revoked(revoked)  # what was delivered to this generation is not committed by it
            await super().on_partitions_revoked(revoked)

        def done(self, tp, offset: int) -> None:
            """The message was stored or dead-lettered (confirmed): its offset may be committed."""
            self._offsets().done(tp, offset)

        async def commit_inputs(self, timeout_s: float) -> dict:
            """Commit each own input partition up to what was delivered since the seek and done
            (stream.commits). One at a time; a commit refused in a rebalance is let go (what
            follows the group's committed offset is read again and absorbed by the insert);
            another failure is logged and counted, and retried at the next call."""
            if self._commit_lock is None:
                self._commit_lock = asyncio.Lock()
            if self._commit_lock.locked() or self.app.rebalancing:
                return {}
            async with self._commit_lock:
                assigned = self.assignment()
                offsets = {tp: o for tp, o in self._offsets().committable().items() if tp in assigned}
                if not offsets:
                    return {}
                epoch, thread = self._seek_epoch, self._thread

                async def in_thread() -> None:
                    await thread._ensure_consumer().commit(
                        {KafkaTP(tp.topic, tp.partition): OffsetAndMetadata(o, "") for tp, o in offsets.items()})
                try:
                    await asyncio.wait_for(thread.call_thread(in_thread), timeout_s)
                except REFUSED_IN_REBALANCE as exc:
                    metrics.COMMIT_FAILURES.labels("rebalance").inc()
                    log.info("input commit refused in a rebalance; re-read from the group's offsets",
                             error=f"{type(exc).__name__}: {exc}"[:300])
                    return {}
                except Exception as exc:  # noqa: BLE001 - counted, logged; the stall watch sees lasting ones
                    kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
                    metrics.COMMIT_FAILURES.labels(kind).inc()
                    log.warning("input commit failed; retried", error=f"{type(exc).__name__}: {exc}"[:300])
                    return {}
                if epoch == self._seek_epoch:
                    self._offsets().committed(offsets)
                    self._committed_offset.update(offsets)
                    now = time.monotonic()
                    thread.tp_last_committed_at.update({tp: now for tp in offsets})
                return offsets

        def _new_consumer_thread(self):
            return Thread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            if self._seek_done is None:
                self._seek_done = asyncio.Event()
            self._seek_epoch += 1
            self._seek_done.clear()
            try:
                await super().perform_seek()
                offsets = self._offsets()
                for tp in self.assignment():
                    # aiokafka's seek_to_committed leaves a partition with no committed offset (or 0)
                    # where its fetcher was: seek it to the start, as auto_offset_reset=earliest means
                    own = self._own(tp)
                    if (own or self.app.topics.acks_enabled_for(tp.topic)) and not self._read_offset.get(tp):
                        await self.seek(tp, 0)
                    if own:
                        offsets.sought(tp, self._read_offset.get(tp) or 0)
                self._seek_offsets = dict(self._read_offset)
            finally:
                self._seek_done.set()

        async def getmany(self, timeout: float):
            if self._seek_done is not None:
                await self._seek_done.wait()
            epoch = self._seek_epoch
            offsets, reread = self._offsets(), {}
            async for tp, message in super().getmany(timeout):
                if self._seek_epoch != epoch:
                    break
                if tp in reread:
                    continue  # fetched past records that were not delivered: read again below
                if tp.topic in own_commits and (missing := offsets.delivered(tp, message.offset)) is not None:
                    reread[tp] = missing
                    continue
                yield tp, message
            if self._seek_epoch != epoch:
                await self._read_again_from_the_seek()  # which also covers the partitions in `reread`
                return
            for tp, missing in reread.items():
                await self._seek_or_hold(tp, missing, "past records not delivered")

        async def _seek_or_hold(self, tp, offset: int, why: str) -> None:
            """Read `tp` again from `offset`; where the seek fails, an own input partition is never
            committed past it (`InputOffsets.held`; /health names it until the next seek)."""
            try:
                await self.seek(tp, offset)
            except Exception as exc:  # noqa: BLE001 - held, logged; /health names it
                if self._own(tp):
                    self._offsets().held(tp, offset)
                log.error(f"could not read a partition again ({why}); not committed past it", topic=tp.topic,
                          partition=tp.partition, offset=offset, error=f"{type(exc).__name__}: {exc}"[:300])

        async def _read_again_from_the_seek(self) -> None:
            """A seek ran while this fetch was out: records the fetch returned were dropped, not
            delivered. They may have been fetched after the seek, the fetcher's position past
            them (seen: every input partition stalled at its committed offset, its position at
            the end of the log, 900 messages never read); nothing has been delivered since the
            seek, so each partition is sought again to where the seek put it."""
            if self._seek_done is not None:
                await self._seek_done.wait()  # the seek may still be running: its offsets first
            epoch, assigned = self._seek_epoch, self.assignment()
            for tp, o in self._seek_offsets.items():
                if tp not in assigned or self._seek_epoch != epoch:
                    continue  # revoked, or a newer seek put it where it must be
                if self._own(tp) or self.app.topics.acks_enabled_for(tp.topic):
                    await self._seek_or_hold(tp, o or 0, "after a seek")
                else:
                    self._read_offset[tp] = o
            metrics.SEEK_REREADS.inc()
            log.info("records fetched while a seek ran were not delivered; read again from where the seek put them")

    return type("GuardedTransport", (faust_kafka.Transport,), {"Consumer": Consumer, "Thread": Thread})
