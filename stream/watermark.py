"""Event-time watermarks across input partitions (plain objects, no Kafka).

The scoring side keeps, per input partition it owns, the newest event time it has stored and
whether the partition is idle (caught up and silent for `idle_s`); it publishes these marks on
every partition of finsent.scored after the counts they cover. The detecting side keeps the
marks per scored partition it reads them on (Kafka orders them after those counts) and takes
the minimum over every input partition, ignoring idle ones:

    watermark = min over active input partitions P of (newest event time of P − lateness)

An input partition that has never reported holds the watermark back (no data is assumed
absent); when all are idle, the watermark is the newest of them. A jump longer than `pause_s`
is remembered as a pause: the detector does not learn those slices as calm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class PartitionClock:
    """Scoring side: newest stored event time and activity per input partition ("topic/p")."""

    lateness_s: float
    idle_s: float
    newest: dict[str, float] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)  # monotonic time of the last event
    next_offset: dict[str, int] = field(default_factory=dict)

    def observe(self, tp: str, event_time: float | None, offset: int) -> None:
        if event_time is not None:
            self.newest[tp] = max(self.newest.get(tp, event_time), event_time)
        self.last_seen[tp] = time.monotonic()
        self.next_offset[tp] = max(self.next_offset.get(tp, 0), offset + 1)

    def marks(self, owned: dict[str, int]) -> dict[str, list]:
        """{tp: [watermark or None, idle]} for the partitions this worker owns, given each
        one's high watermark (log end offset)."""
        now, out = time.monotonic(), {}
        for tp, highwater in owned.items():
            caught_up = self.next_offset.get(tp, 0) >= highwater
            idle = caught_up and now - self.last_seen.get(tp, 0.0) >= self.idle_s
            newest = self.newest.get(tp)
            out[tp] = [None if newest is None else newest - self.lateness_s, idle]
        return out


@dataclass
class WatermarkView:
    """Detecting side: the marks read on one scored partition, and the watermark they give."""

    expected: frozenset[str]  # every input partition, "topic/p"
    pause_s: float
    marks: dict[str, list] = field(default_factory=dict)
    value: float | None = None
    pauses: list[tuple[float, float]] = field(default_factory=list)

    def update(self, marks: dict[str, list]) -> float | None:
        """Fold new marks; returns the new watermark when it advanced, else None."""
        for tp, (ts, idle) in marks.items():
            old = self.marks.get(tp, [None, False])[0]
            self.marks[tp] = [ts if old is None else max(old, ts if ts is not None else old), idle]
        new = self.compute()
        if new is None or (self.value is not None and new <= self.value):
            return None
        if self.value is not None and new - self.value > self.pause_s:
            self.pauses = (self.pauses + [(self.value, new)])[-32:]
        self.value = new
        return new

    def compute(self) -> float | None:
        if any(tp not in self.marks for tp in self.expected):
            return None
        active = [m[0] for tp, m in self.marks.items() if not m[1] and tp in self.expected]
        if any(ts is None for ts in active):
            return None
        if active:
            return min(active)
        known = [m[0] for m in self.marks.values() if m[0] is not None]
        return max(known) if known else None
