"""Partitions whose committed offset stopped moving while messages wait behind it.

Every other check can say "ok" while one partition is stuck (a fetch bug, a held batch, a
commit that never passes a gap): its lag stays, the others drain, the worker looks healthy.
`StallWatch` turns that into a /health problem and a metric."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StallWatch:
    stall_s: float
    stalled: dict = field(default_factory=dict)  # the last observe()'s answer
    _seen: dict = field(default_factory=dict)  # partition -> (committed offset, since when it has not moved)

    def problem(self) -> str:
        """The stalled partitions in words, for /health ("" when none)."""
        return "; ".join(f"{p} stuck at " + (f"offset {v['committed']}" if v["committed"] is not None
                                            else "its start (nothing committed)")
                         + f" for {v['for_s']:.0f} s with {v['lag']} waiting" for p, v in self.stalled.items())

    def observe(self, positions: dict[str, tuple[int | None, int | None]], now: float) -> dict[str, dict]:
        """positions: partition name -> (committed, highwater). Returns the stalled ones:
        lag > 0 and the committed offset unchanged for at least `stall_s`."""
        stalled = {}
        for name, (committed, high) in positions.items():
            prev = self._seen.get(name)
            if prev is None or prev[0] != committed:
                self._seen[name] = prev = (committed, now)
            lag = (high or 0) - (committed or 0)
            if lag > 0 and now - prev[1] >= self.stall_s:
                stalled[name] = {"committed": committed, "lag": lag, "for_s": round(now - prev[1], 1)}
        for name in [n for n in self._seen if n not in positions]:  # revoked
            del self._seen[name]
        self.stalled = stalled
        return stalled
