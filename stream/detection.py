"""The detect agent's work as a plain object: count records and watermark marks in, per-key
detector state in a mapping (the Faust table, or a dict in tests), alerts out.

Order of effects for one key: decide on a copy of the state → write the alert row and event
(idempotent) → publish to finsent.alerts → store the new state. A crash anywhere before the
last step replays the same input from the same state, makes the same decisions, and the
idempotent writes absorb them; a crash after it finds the batch id already counted. So an
alert is never lost, never duplicated in Postgres, and counts never double.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping

from core import logs
from stream import metrics
from stream.detector import Cell, KeyState, SpikeDetector
from stream.sink import PostgresSink
from stream.watermark import WatermarkView

log = logs.get("finsent.detect")


class Detection:
    def __init__(self, detector: SpikeDetector, table: MutableMapping, sink: PostgresSink,
                 send_alert: Callable[[str, dict], Awaitable], expected: frozenset[str], pause_s: float):
        self.detector, self.table, self.sink, self.send_alert = detector, table, sink, send_alert
        self.expected, self.pause_s = expected, pause_s
        self.views: dict[int, WatermarkView] = {}
        self.active: dict[int, set[str]] = {}
        self.late: dict[str, int] = {}
        self.final: dict[int, int] = {}  # per scored partition: the newest slice its keys were advanced to

    def view(self, q: int) -> WatermarkView:
        if q not in self.views:
            self.views[q] = WatermarkView(self.expected, self.pause_s)
            self.active[q] = {k for k, v in self.table.items() if v and v.get("part") == q
                              and not KeyState.from_dict(v).quiet()}
        return self.views[q]

    async def on_counts(self, q: int, msg: dict) -> None:
        view, key = self.view(q), msg["key"]
        cells = [Cell(c[0], c[1], c[2], tuple(c[3]), c[4]) for c in msg["cells"]]
        await self._run(q, key, lambda st: self.detector.add(st, key, cells, msg["batch"], view.value,
                                                             tuple(view.pauses)))

    async def on_marks(self, q: int, marks: dict) -> None:
        view = self.view(q)
        wm = view.update(marks)
        if wm is None:
            return
        metrics.WATERMARK_LAG.set(max(0.0, time.time() - wm))
        last = int(wm // self.detector.cfg.slice_s) - 1
        if self.final.get(q) == last:
            return  # no slice became final: nothing to decide, no state to rewrite (a key that
            # got counts since was advanced to this watermark by add())
        self.final[q] = last
        for key in sorted(self.active[q]):
            await self._run(q, key, lambda st, key=key: (self.detector.advance(st, key, wm, tuple(view.pauses)), 0))

    async def _run(self, q: int, key: str, step) -> None:
        st = KeyState.from_dict(self.table.get(key))
        st.part = q
        decisions, late = step(st)
        if late:
            kind = key.split(":", 1)[0]
            metrics.LATE.labels(kind).inc(late)
            self.late[kind] = self.late.get(kind, 0) + late
            log.warning("late events counted, not scored into windows", key=key, late=late)
        for d in decisions:
            payload = await self.sink.write_decision(d)
            if payload is not None:
                await self.send_alert(key, payload)
                metrics.ALERTS.labels(payload["event"]).inc()
                log.info("alert", change=payload["event"], key=key, n=d.n, negatives=d.negatives,
                         severity=d.severity, p=d.p_value)
        self.table[key] = st.to_dict()
        (self.active[q].discard if st.quiet() else self.active[q].add)(key)

    def watermarks(self) -> dict[str, float | None]:
        return {str(q): v.value for q, v in sorted(self.views.items())}
