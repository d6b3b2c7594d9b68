"""Spike detector: a plain object fed one scored event at a time, per aggregation key.

Per key it keeps a tumbling event-time window (n items, k negative, a few sample ids) and a
baseline from the key's own closed windows: EWMA of negatives per window and of the negative
share, with a warm-up. While a window is open, k is tested against the baseline at every
event, so an alert goes out within seconds of a surge rather than at the window's end:

    z = (k - λ) / sqrt(λ),  λ = max(baseline negatives per window, floor)   (Poisson)

An alert needs k ≥ min_count, z ≥ z_threshold and a negative share at least `share_margin`
above the baseline share (a pure volume spike of ordinary news is not a negative surge).
One open alert per key; it resolves at the first closed window that is back to normal
(z < resolve_z); then a cool-down of `cooldown_windows` windows. State is a plain dict so a
Faust table (with its changelog) can hold it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DetectorConfig:
    window_s: int = 60
    min_count: int = 8
    z_threshold: float = 4.0
    resolve_z: float = 2.0
    share_margin: float = 0.15
    warmup_windows: int = 3
    cooldown_windows: int = 5
    alpha: float = 0.2  # EWMA weight of the newest window
    lambda_floor: float = 1.0
    samples: int = 5


@dataclass
class KeyState:
    window: int = -1  # window index = floor(ts / window_s)
    n: int = 0
    k: int = 0
    samples: list[str] = field(default_factory=list)
    windows_seen: int = 0
    ewma_n: float = 0.0
    ewma_k: float = 0.0
    alert_window: int | None = None  # window in which the open alert fired
    cooldown_until: int = -1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> KeyState:
        return cls(**d) if d else cls()


@dataclass(frozen=True)
class Decision:
    action: str  # open | resolve
    key: str
    window_start: float
    window_end: float
    n: int
    negatives: int
    baseline_rate: float
    baseline_n: float
    z: float
    p_value: float
    severity: str
    sample_event_ids: tuple[str, ...]


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    term = math.exp(-lam)
    cdf = term
    for i in range(1, k):
        term *= lam / i
        cdf += term
    return max(0.0, 1.0 - cdf)


class SpikeDetector:
    def __init__(self, config: DetectorConfig | None = None):
        self.cfg = config or DetectorConfig()

    def observe(self, state: KeyState, key: str, ts: float, negative: bool, event_id: str) -> list[Decision]:
        """Fold one event into `state` (mutated); return the alerts opened or resolved."""
        decisions = []
        window = int(ts // self.cfg.window_s)
        if window < state.window:  # late event from a closed window: counted nowhere, alerts nothing
            return decisions
        if window > state.window:
            decisions += self._close(state, key, window)
        state.n += 1
        if negative:
            state.k += 1
            if len(state.samples) < self.cfg.samples:
                state.samples.append(event_id)
        if self._surging(state) and state.alert_window is None and window >= state.cooldown_until:
            state.alert_window = window
            decisions.append(self._decision("open", state, key, window))
        return decisions

    def _close(self, state: KeyState, key: str, new_window: int) -> list[Decision]:
        decisions = []
        if state.window >= 0:
            if state.alert_window is not None and state.window > state.alert_window and self.z(state) < self.cfg.resolve_z:
                decisions.append(self._decision("resolve", state, key, state.window))
                state.alert_window, state.cooldown_until = None, state.window + 1 + self.cfg.cooldown_windows
            if state.alert_window is None or state.window > state.alert_window:
                self._learn(state, state.n, state.k)
            for _ in range(min(new_window - state.window - 1, 50)):  # empty windows in between
                self._learn(state, 0, 0)
        state.window, state.n, state.k, state.samples = new_window, 0, 0, []
        return decisions

    def _learn(self, state: KeyState, n: int, k: int) -> None:
        a = self.cfg.alpha if state.windows_seen else 1.0
        state.ewma_n += a * (n - state.ewma_n)
        state.ewma_k += a * (k - state.ewma_k)
        state.windows_seen += 1

    def baseline_rate(self, state: KeyState) -> float:
        return state.ewma_k / state.ewma_n if state.ewma_n > 0 else 0.0

    def z(self, state: KeyState) -> float:
        lam = max(state.ewma_k, self.cfg.lambda_floor)
        return (state.k - lam) / math.sqrt(lam)

    def _surging(self, state: KeyState) -> bool:
        c = self.cfg
        return (state.windows_seen >= c.warmup_windows and state.k >= c.min_count and self.z(state) >= c.z_threshold
                and state.k / state.n >= self.baseline_rate(state) + c.share_margin)

    def _severity(self, z: float) -> str:
        return "high" if z >= 2 * self.cfg.z_threshold else "medium" if z >= 1.5 * self.cfg.z_threshold else "low"

    def _decision(self, action: str, state: KeyState, key: str, window: int) -> Decision:
        lam = max(state.ewma_k, self.cfg.lambda_floor)
        z = self.z(state)
        return Decision(action, key, window * self.cfg.window_s, (window + 1) * self.cfg.window_s, state.n, state.k,
                        round(self.baseline_rate(state), 4), round(state.ewma_n, 3), round(z, 3),
                        poisson_sf(state.k, lam), self._severity(z), tuple(state.samples))
