"""Event-time watermarks across input partitions (plain objects, no Kafka).

The scoring side keeps, per input partition it owns, the newest event time it has stored and
whether the partition is idle; it publishes these marks on every partition of finsent.scored
after the counts they cover. The detecting side keeps the marks per scored partition it reads
them on (Kafka orders them after those counts) and takes the minimum over every input
partition, ignoring idle ones:

    watermark = min over active input partitions P of (newest event time of P − lateness)
                capped at wall clock − lateness (on the detecting side)

Idle (as Flink's `withIdleness`): a partition is idle when everything up to its high watermark
has been processed — by this process, or by any before it, as the group's committed offset
says — and no item with an event time has arrived on it for `idle_s` since the later of its last
such item and the moment this process was given the partition. So after a restart or a
rebalance a partition that holds old messages and gets no new one is idle after `idle_s`,
whatever happened before; an empty partition is idle `idle_s` after it is assigned. A partition
that has never reported holds the watermark back (no data is assumed absent), and so does an
active one without an event time yet.

When every partition is idle, the watermark is the newest of their marks, and never beyond
wall clock − lateness: one item dated inside the future-skew allowance does not make the next
minutes of real events late. The cap holds always (no partition's item can be newer than now,
except by skew), and binds only on such items: a backlog's marks are far behind the clock.
An idle partition whose traffic comes back with items older than the watermark counts them
late: that is the price of not waiting for a partition that has nothing to send.

A jump longer than `pause_s` is remembered as a pause (reported only). `holder()` says in
words what holds the watermark back, for the stall report (stream.detection).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass
class PartitionClock:
    """Scoring side: newest stored event time and activity per input partition ("topic/p")."""

    lateness_s: float
    idle_s: float
    newest: dict[str, float] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)  # monotonic time of the last item with an event time
    next_offset: dict[str, int] = field(default_factory=dict)  # after the newest offset this process stored
    owned_since: dict[str, float] = field(default_factory=dict)  # monotonic time this process was given it

    def observe(self, tp: str, event_time: float | None, offset: int, now: float | None = None) -> None:
        """An item of `tp` is stored (or dead-lettered: `event_time` None, no activity in event time)."""
        if event_time is not None:
            self.newest[tp] = max(self.newest.get(tp, event_time), event_time)
            self.last_seen[tp] = time.monotonic() if now is None else now
        self.next_offset[tp] = max(self.next_offset.get(tp, 0), offset + 1)

    def marks(self, owned: dict[str, int], committed: dict[str, int | None] | None = None,
              now: float | None = None) -> dict[str, list]:
        """{tp: [watermark or None, idle]} for the partitions this worker owns, given each one's
        high watermark (log end offset) and the group's committed offset (None: nothing yet)."""
        now = time.monotonic() if now is None else now
        committed = committed or {}
        for tp in [tp for tp in self.owned_since if tp not in owned]:  # revoked: given again, it starts anew
            del self.owned_since[tp]
        out = {}
        for tp, highwater in owned.items():
            since = self.owned_since.setdefault(tp, now)
            processed = max(self.next_offset.get(tp, 0), committed.get(tp) or 0)
            quiet_since = max(self.last_seen.get(tp, since), since)
            idle = processed >= highwater and now - quiet_since >= self.idle_s
            newest = self.newest.get(tp)
            out[tp] = [None if newest is None else newest - self.lateness_s, idle]
        return out


@dataclass
class WatermarkView:
    """Detecting side: the marks read on one scored partition, and the watermark they give."""

    expected: frozenset[str]  # every input partition, "topic/p"
    pause_s: float
    lateness_s: float = 0.0  # the cap: never beyond wall clock − lateness (when `now` is given)
    marks: dict[str, list] = field(default_factory=dict)
    value: float | None = None
    pauses: list[tuple[float, float]] = field(default_factory=list)
    advanced_at: float | None = None  # wall clock when `value` last advanced (or the view began)
    marked_at: float | None = None  # wall clock of the last marks

    def update(self, marks: dict[str, list], now: float | None = None) -> float | None:
        """Fold new marks; returns the new watermark when it advanced, else None. `now`: wall
        clock of the detecting side (None: no cap, as the offline replay of stored rows)."""
        for tp, (ts, idle) in marks.items():
            old = self.marks.get(tp, [None, False])[0]
            self.marks[tp] = [ts if old is None else max(old, ts if ts is not None else old), idle]
        if now is not None:
            self.marked_at = now
            if self.advanced_at is None:
                self.advanced_at = now
        new = self.compute(now)
        if new is None or (self.value is not None and new <= self.value):
            return None
        if self.value is not None and new - self.value > self.pause_s:
            self.pauses = (self.pauses + [(self.value, new)])[-32:]
        self.value = new
        self.advanced_at = now
        return new

    def compute(self, now: float | None = None) -> float | None:
        if any(tp not in self.marks for tp in self.expected):
            return None
        active = [m[0] for tp, m in self.marks.items() if not m[1] and tp in self.expected]
        if any(ts is None for ts in active):
            return None
        if active:
            wm = min(active)
        else:
            known = [m[0] for tp, m in self.marks.items() if m[0] is not None and tp in self.expected]
            if not known:
                return None
            wm = max(known)
        return wm if now is None else min(wm, now - self.lateness_s)

    def holder(self) -> str:
        """What holds the watermark back, in words; "" when nothing does (every partition idle:
        nothing is waiting for an event time)."""
        missing = sorted(tp for tp in self.expected if tp not in self.marks)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            return f"no mark yet from {', '.join(missing[:3])}{more}"
        active = sorted((m[0] is not None, m[0] or 0.0, tp) for tp, m in self.marks.items()
                        if not m[1] and tp in self.expected)
        if not active:
            return ""
        known, ts, tp = active[0]
        if not known:
            return f"{tp} (not idle, no event time yet)"
        return f"{tp} (not idle, its mark at {datetime.fromtimestamp(ts, timezone.utc):%Y-%m-%d %H:%M:%S}Z)"
