"""The worker's parts, built once by stream.app.create_app and handed to the modules that
register agents (stream.agents), timers (stream.timers) and web pages (stream.pages)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import faust

from core.settings import Settings
from models.hotswap import ModelSwap
from stream import metrics
from stream.detection import Detection
from stream.kafka_compat import FetchGuard, committed_offset
from stream.lifecycle import Upkeep
from stream.pipeline import BatchProcessor
from stream.progress import StallWatch
from stream.sink import PostgresSink
from stream.watermark import PartitionClock


@dataclass
class Worker:
    settings: Settings
    app: faust.App
    inputs: faust.types.TopicT
    deadletter: faust.types.TopicT
    scored: faust.types.TopicT
    alerts: faust.types.TopicT
    sink: PostgresSink
    clock: PartitionClock
    processor: BatchProcessor
    swap: ModelSwap
    detection: Detection
    guard: FetchGuard
    stall_watch: StallWatch
    upkeep: Upkeep  # hourly: partitions, history past retention, the stories index (stream.lifecycle)
    # monotonic time since which no input partition is assigned (from the start: a worker waiting in
    # its first rebalance counts too)
    unassigned_since: float | None = field(default_factory=time.monotonic)

    catching_up_until: float = 0.0
    # a worker is not ok before it has shown it can do its work: assigned, and either a batch stored
    # since it started or nothing to store (a replacement started while Postgres is down, its input
    # lagging, said 200 for 8 s of an outside stall in the short chaos run)
    stored_once: bool = False
    started: bool = False

    def _lagging(self) -> bool | None:
        """Whether an assigned input partition has records past its committed offset; None while
        that is not known: a partition not fetched yet has no highwater (the first fetch answer
        brings it, records or not). A replacement that took "unknown" for "no lag" said 200 before
        its first fetch, while nothing had been stored for 33 s (the chaos run on a loaded machine)."""
        consumer = self.app.consumer
        try:
            lagging = False
            for tp in consumer.assignment():
                if tp.topic in self.settings.input_topics:
                    high = consumer.highwater(tp)
                    if high is None:
                        return None
                    lagging = lagging or high > (committed_offset(consumer, tp) or 0)
            return lagging
        except Exception:  # noqa: BLE001 - no consumer yet: nothing known
            return None

    def recovery_problem(self, now: float) -> str:
        """Faust pauses every stream while it recovers its tables from their changelogs: a recovery
        running longer than the stall limit stops scoring and alerting (one that waited for ever for
        changelog records a fetch had dropped stalled the survivor of a rebalance: issue 20)."""
        recovery = getattr(getattr(self.app, "tables", None), "_recovery", None)  # never created here
        started = getattr(recovery, "_recovery_started_at", None)  # monotonic, set by Faust's Recovery
        stuck = bool(recovery is not None and recovery.in_recovery and started is not None
                     and now - started > self.settings.stall_s)
        metrics.RECOVERY_STUCK.set(1 if stuck else 0)
        return f"table recovery running for {now - started:.0f} s, every stream paused" if stuck else ""

    def unassigned_problem(self, now: float) -> str:
        """A worker given no input partition for longer than the stall limit scores nothing: in a
        rebalance that does not end (one waiting for a killed member's session), or one worker more
        than there are partitions. Read from the consumer's assignment at each call."""
        try:
            assigned = any(tp.topic in self.settings.input_topics for tp in self.app.consumer.assignment())
        except Exception:  # noqa: BLE001 - a consumer not started yet has no assignment
            assigned = False
        if not self.started:
            if not assigned:
                return "starting: no input partition assigned yet"
            lagging = None if self.stored_once else self._lagging()
            if self.stored_once or lagging is False:
                self.started = True
            elif lagging is None:
                return "starting: input partitions assigned, their end offsets not fetched yet"
            else:
                return "starting: input partitions lag and nothing is stored yet"
        stall_s = self.settings.stall_s
        if assigned:
            if self.unassigned_since is not None and now - self.unassigned_since > stall_s:
                self.catching_up_until = now + stall_s  # a long wait: not ok again before it has caught up
            self.unassigned_since = None
        elif self.unassigned_since is None:
            self.unassigned_since = now
        if assigned and now < self.catching_up_until and self._lagging() is not False:
            return "partitions assigned after a long wait; catching up"
        if self.unassigned_since is None or now - self.unassigned_since <= stall_s:
            return ""
        return f"no input partition assigned for {now - self.unassigned_since:.0f} s"
