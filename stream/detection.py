"""The detect agent's work as a plain object: count records and watermark marks in, per-key
detector state in a mapping (the Faust table, or a dict in tests), alerts out.

Order of effects for one key: decide on a copy of the state → write the alert row and event
(idempotent) → publish to finsent.alerts → store the new state. A crash anywhere before the
last step replays the same input from the same state, makes the same decisions, and the
idempotent writes absorb them; a crash after it finds the batch id already counted.

Per scored partition this worker owns: a watermark view (stream.watermark) and the set of keys
with something to finalise (`active`, built from the table). After a rebalance (`reassigned`)
both are rebuilt from the table, which Faust has restored from its changelog: a key whose alert
another worker opened while the partition was away is advanced and resolves here.

Keys quiet for longer than the detector's `key_ttl_s` of event time are deleted from the table
(a tombstone in its changelog), so state and the changelog replay at start stay bounded; the
detector treats such a key as new when it comes back, whether or not it was deleted yet. The
table holds at most `max_keys` keys: past that (a flood of distinct tickers: spam cashtags, each
~3 KB of state for a day), the quiet keys seen longest ago are deleted the same way, early.

A watermark held back for longer than `stall_s` (a partition without a mark, an active one
whose event time does not move, no marks at all) is a problem: `problem()` says which, for
/health, and `finsent_watermark_stalled` counts such partitions. So is more than `late_share`
of the last ten minutes' events counted late (in no window: an idle partition came back with
old items, a producer out of event-time order): the count is in /health and
`finsent_late_events_total` too, but a share that high means alerts are being missed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping

from core import logs
from stream import metrics
from stream.detector import KeyState, SpikeDetector
from stream.records import Counts
from stream.sink import PostgresSink
from stream.watermark import WatermarkView

log = logs.get("finsent.detect")


class Detection:
    def __init__(self, detector: SpikeDetector, table: MutableMapping, sink: PostgresSink,
                 send_alert: Callable[[str, dict], Awaitable], expected: frozenset[str], pause_s: float,
                 stall_s: float = 120.0, clock: Callable[[], float] = time.time, late_share: float = 0.01):
        self.detector, self.table, self.sink, self.send_alert = detector, table, sink, send_alert
        self.expected, self.pause_s, self.stall_s, self.clock = expected, pause_s, stall_s, clock
        self.views: dict[int, WatermarkView] = {}
        self.active: dict[int, set[str]] = {}
        self.late: dict[str, int] = {}
        self.final: dict[int, int] = {}  # per scored partition: the newest slice its keys were advanced to
        self.swept: dict[int, float] = {}  # per scored partition: the watermark of the last sweep of expired keys
        self.stalled: dict[int, str] = {}  # the last check()'s answer
        self.late_share = late_share
        self.recent_late: dict[int, list[int]] = {}  # minute -> [events, of them late] (topic keys, last 10 min)
        self.evict_from: dict[int, int] = {}  # per partition: the table size at which to look again for keys to
        # evict (after a pass that found too few)

    def view(self, q: int) -> WatermarkView:
        if q not in self.views:
            self.views[q] = WatermarkView(self.expected, self.pause_s, self.detector.cfg.lateness_s,
                                          advanced_at=self.clock())
        return self.views[q]

    def keys(self, q: int) -> set[str]:
        """Keys of scored partition `q` with something to finalise, built from the table when missing."""
        if q not in self.active:
            self.active[q] = {k for k, v in list(self.table.items()) if v and v.get("part") == q
                              and not KeyState.from_dict(v).quiet()}
        return self.active[q]

    def reassigned(self, owned: set[int]) -> None:
        """The scored partitions this worker owns after a rebalance (the table already restored):
        forget what was built for the others, rebuild the key sets of these from the table."""
        for q in [q for q in self.views if q not in owned]:
            del self.views[q]
        self.active.clear()
        self.final.clear()
        self.swept.clear()
        now = self.clock()
        for q in owned:  # the stall clock starts again: a view kept from before was not read meanwhile
            v = self.view(q)
            v.advanced_at, v.marked_at = now, None

    async def on_counts(self, q: int, counts: Counts) -> None:
        view, key = self.view(q), counts.key
        cells = counts.detector_cells()
        late = await self._run(q, key, lambda st: self.detector.add(st, key, cells, counts.batch, view.value,
                                                                    tuple(view.pauses)))
        if key.startswith("topic:"):  # every event has one topic key: the share of events counted late
            minute = int(self.clock() // 60)
            n_late = self.recent_late.setdefault(minute, [0, 0])
            n_late[0] += sum(c.n for c in cells)
            n_late[1] += late
            for m in [m for m in self.recent_late if m <= minute - 10]:
                del self.recent_late[m]

    async def on_marks(self, q: int, marks: dict) -> None:
        view = self.view(q)
        wm = view.update(marks, self.clock())
        if wm is None:
            return
        metrics.WATERMARK_LAG.set(max(0.0, time.time() - wm))
        last = int(wm // self.detector.cfg.slice_s) - 1
        if self.final.get(q) == last:
            return  # no slice became final: nothing to decide, no state to rewrite (a key that
            # got counts since was advanced to this watermark by add())
        self.final[q] = last
        for key in sorted(self.keys(q)):
            await self._run(q, key, lambda st, key=key: (self.detector.advance(st, key, wm, tuple(view.pauses)), 0))
        self._sweep(q, wm)
        self._evict(q)

    def _sweep(self, q: int, wm: float) -> None:
        """Delete the keys of `q` quiet for longer than the detector's key_ttl_s (at most once per
        ttl/4 of event time, and at least once an hour)."""
        ttl = self.detector.cfg.key_ttl_s
        if not ttl or wm - self.swept.get(q, float("-inf")) < min(ttl / 4, 3600.0):
            return
        self.swept[q] = wm
        last = int(wm // self.detector.cfg.slice_s) - 1
        gone = [k for k, v in list(self.table.items())
                if v and v.get("part") == q and self.detector.expired(KeyState.from_dict(v), last)]
        for key in gone:
            del self.table[key]
            self.keys(q).discard(key)
        if gone:
            metrics.KEYS_EXPIRED.inc(len(gone))
            log.info("quiet detector keys expired", partition=q, keys=len(gone))

    def _evict(self, q: int) -> None:
        """Past `max_keys` keys in the table: delete the quiet keys of `q` (nothing open, no alert,
        an all-zero recent window) seen longest ago, down to nine tenths of the cap. Such a key
        comes back as a new one, as after its TTL. A pass that finds too few (the flood is still in
        its windows) is tried again once the table has grown by a hundredth of the cap."""
        cap, size = self.detector.cfg.max_keys, len(self.table)
        metrics.KEYS.set(size)
        if not cap or size <= cap or size < self.evict_from.get(q, 0):
            return
        quiet = sorted((v.get("last", -1), k) for k, v in list(self.table.items())
                       if v and v.get("part") == q and not v.get("open") and v.get("alert") is None
                       and not any(r[0] for r in v.get("recent") or ()))
        gone = [k for _, k in quiet[:size - int(cap * 0.9)]]
        for key in gone:
            del self.table[key]
            self.keys(q).discard(key)
        size = len(self.table)
        self.evict_from[q] = size + max(1, cap // 100) if size > cap else 0
        metrics.KEYS.set(size)
        if gone:
            metrics.KEYS_EVICTED.inc(len(gone))
            log.warning("detector keys over the cap: the quiet ones seen longest ago forgotten", partition=q,
                        keys=len(gone), held=size, cap=cap)

    async def _run(self, q: int, key: str, step) -> int:
        st = KeyState.from_dict(self.table.get(key))
        st.part = q
        decisions, late = step(st)
        st.part = q  # (a key the detector found expired starts anew)
        if late:
            kind = key.split(":", 1)[0]
            metrics.LATE.labels(kind).inc(late)
            self.late[kind] = self.late.get(kind, 0) + late
            log.warning("late events counted, not scored into windows", key=key, late=late)
        for d in decisions:
            record = await self.sink.write_decision(d)
            if record is not None:
                await self.send_alert(key, record)
                metrics.ALERTS.labels(record.event).inc()
                log.info("alert", change=record.event, key=key, n=d.n, negatives=d.negatives,
                         severity=d.severity, p=d.p_value)
        self.table[key] = st.to_dict()
        (self.keys(q).discard if st.quiet() else self.keys(q).add)(key)
        return late

    def watermarks(self) -> dict[str, float | None]:
        return {str(q): v.value for q, v in sorted(self.views.items())}

    def check(self) -> dict[int, str]:
        """Scored partitions whose watermark has been held back longer than `stall_s`: {q: why}.
        Sets `finsent_watermark_stalled`; logs an error when a partition starts stalling."""
        now, out = self.clock(), {}
        for q, v in sorted(self.views.items()):
            since = v.marked_at if v.marked_at is not None else v.advanced_at
            if since is not None and now - since > self.stall_s:
                out[q] = f"no watermark marks for {now - since:.0f} s"
                continue
            holder = v.holder()
            if holder and v.advanced_at is not None and now - v.advanced_at > self.stall_s:
                at = "none yet" if v.value is None else f"{v.value:.0f}"
                out[q] = f"watermark {at} held for {now - v.advanced_at:.0f} s by {holder}"
        for q in out.keys() - self.stalled.keys():
            log.error("event-time watermark not advancing: alerts are not decided", partition=q, why=out[q])
        self.stalled = out
        metrics.WATERMARK_STALLED.set(len(out))
        return out

    def problem(self) -> str:
        """For /health: the stalled watermarks, and more than `late_share` of the last ten minutes'
        events counted late (behind the watermark: not in any window), in words ("" when none)."""
        out = [f"scored partition {q}: {why}" for q, why in self.check().items()]
        minute = int(self.clock() // 60)
        n = late = 0
        for m, (a, b) in self.recent_late.items():
            if m > minute - 10:
                n, late = n + a, late + b
        if late >= 10 and late > self.late_share * n:
            out.append(f"{late} of {n} events in the last 10 min counted late ({100 * late / n:.1f} %): "
                       "behind the event-time watermark, in no window")
        return "; ".join(out)
