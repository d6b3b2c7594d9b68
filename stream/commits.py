"""Which input offsets may be committed: the worker decides, not Faust.

Faust (0.15.3) commits an input partition up to the longest run of acked offsets and fills what
it takes for gaps: offsets it believes were skipped by the log, a one-offset hole after the
committed offset, any hole while it holds no committed offset (it drops it at every revocation).
Across a rebalance with a batch still being stored, acks of the old generation and read offsets
moved by records fetched around the seek made it commit past messages that were never stored nor
dead-lettered (issue 17: 172 good messages lost in a chaos run with a 10 s session timeout).

`InputOffsets` keeps, per input partition and since the last seek (every rebalance seeks to the
committed offsets), the offsets the consumer delivered in order and which of them are done
(stored, or dead-lettered and confirmed). The offset it offers to commit is the first delivered
offset not done yet, or the one after the last delivered when all are done: every message of the
log below it was delivered after the seek and finished. Deliveries must follow each other: a jump
of one offset is a transaction marker (never delivered); a larger one is either records the log
does not hold (compaction, retention, aborted transactions) or records that were not delivered
(what lost the 172). `delivered` then answers the first missing offset: the consumer seeks the
partition back there and drops what it fetched after it; if the fresh fetch from there again
starts past the jump, the log does not hold those offsets and the jump is taken. Where the seek
itself fails, the partition's commits stop before the jump (`hold`, /health 503) until the next
seek (a rebalance or a restart) reads from there again. A partition that delivers before
any seek told where it starts is not committed until one does. Messages finished by an older
generation's batch count when their offset was delivered again since the seek (the same message,
stored); the others are delivered again and absorbed by the idempotent insert.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Partition:
    committed: int  # where the seek put it: the group's committed offset (or the start)
    frontier: int  # the offset after the last one delivered since the seek
    pending: dict = field(default_factory=dict)  # delivered, not done; insertion order = offset order
    hold: int | None = None  # the first offset of a jump in the deliveries: never committed past
    reread: int | None = None  # the first missing offset of a jump already read again from


MARKER_GAP = 1  # offsets a delivery may jump without holding: a transaction's control record


class InputOffsets:
    def __init__(self, on_gap=None) -> None:
        self.parts: dict = {}  # tp -> _Partition
        self.on_gap = on_gap  # called (tp, first missing offset, next delivered offset) at a hold

    def sought(self, tp, offset: int) -> None:
        """The consumer was sought to `offset` (its committed offset): everything delivered
        before is forgotten; the next delivery must come from there."""
        self.parts[tp] = _Partition(committed=offset, frontier=offset)

    def revoked(self, tps) -> None:
        for tp in tps:
            self.parts.pop(tp, None)

    def delivered(self, tp, offset: int) -> int | None:
        """The consumer is about to hand the message at `offset` on to the agent, in offset order.
        None: hand it on. An offset: records from there were not delivered; do not hand this one
        on, seek the partition there (a second jump from the same offset is taken: the log does
        not hold them)."""
        p = self.parts.get(tp)
        if p is None or offset < p.frontier:  # no seek yet (not committable), or a re-delivery
            return None
        if offset - p.frontier > MARKER_GAP:
            if p.reread != p.frontier:
                p.reread = p.frontier
                if self.on_gap is not None:
                    self.on_gap(tp, p.frontier, offset, True)
                return p.frontier
            if self.on_gap is not None:
                self.on_gap(tp, p.frontier, offset, False)
        p.pending[offset] = None
        p.frontier = offset + 1
        return None

    def held(self, tp, offset: int) -> None:
        """The partition could not be read again from `offset`: never commit past it (until a seek)."""
        p = self.parts.get(tp)
        if p is not None and p.hold is None:
            p.hold = offset

    def done(self, tp, offset: int) -> None:
        """The message at `offset` was stored or dead-lettered (and confirmed)."""
        p = self.parts.get(tp)
        if p is not None:
            p.pending.pop(offset, None)

    def committable(self) -> dict:
        """tp -> offset that may be committed now, where it is ahead of the last commit."""
        out = {}
        for tp, p in self.parts.items():
            offset = next(iter(p.pending)) if p.pending else p.frontier
            if p.hold is not None:
                offset = min(offset, p.hold)
            if offset > p.committed:
                out[tp] = offset
        return out

    def committed(self, offsets: dict) -> None:
        for tp, offset in offsets.items():
            p = self.parts.get(tp)
            if p is not None and offset > p.committed:
                p.committed = offset

    def pending(self, tp) -> int:
        p = self.parts.get(tp)
        return len(p.pending) if p else 0

    def holds(self) -> dict:
        """tp -> the offset its commits stop at (records after it were delivered, it was not)."""
        return {tp: p.hold for tp, p in self.parts.items() if p.hold is not None}
