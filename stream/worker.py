"""The worker's parts, built once by stream.app.create_app and handed to the modules that
register agents (stream.agents), timers (stream.timers) and web pages (stream.pages)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from core.settings import Settings
from models.hotswap import ModelSwap
from stream.detection import Detection
from stream.kafka_compat import FetchGuard
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
    unassigned_since: float | None = None  # monotonic time since which no input partition is assigned

    def unassigned_problem(self, now: float) -> str:
        """A worker given no input partition for longer than the stall limit scores nothing: in a
        rebalance that does not end, or one worker more than there are partitions."""
        if self.unassigned_since is None or now - self.unassigned_since <= self.settings.stall_s:
            return ""
        return f"no input partition assigned for {now - self.unassigned_since:.0f} s"
