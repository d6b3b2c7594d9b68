"""Spike detector: a plain object fed one scored event at a time, per aggregation key.

Per key it keeps a tumbling event-time window (n items, k negative, a few sample ids) and a
baseline from the key's own closed windows: EWMA of negatives per window and of the negative
share, with a warm-up. While a window is open, k is tested against the baseline at every
event, so an alert goes out within seconds of a surge rather than at the window's end:

    p = P(X ≥ k), X ~ Poisson(λ),  λ = max(b + sqrt(b), floor),  b = baseline negatives/window
    (one standard deviation above the baseline: the baseline is itself an estimate, and real
    news counts vary more than Poisson)
    z = (k - λ) / sqrt(λ)   (reported, and used to decide when the key is back to normal)

An alert needs k ≥ min_count, p ≤ p_threshold and a negative share at least `share_margin`
above the baseline share (a pure volume spike of ordinary news is not a negative surge). A topic alert also needs
breadth: if one ticker carries more than half of the window's excess negatives (k − baseline),
the surge is that ticker's (its own key alerts) and the topic stays quiet, so one incident
gives one alert.
One open alert per key; it resolves at the first closed window that is back to normal
(z < resolve_z); then a cool-down of `cooldown_windows` windows. A window closes (joins the
baseline) once the key has seen an event `lateness_windows` windows newer; after
`idle_learn_windows` empty windows in a row the rest of a silence is skipped, not learned as
zero, so a worker restart after downtime does not wake up to a collapsed baseline. State is a plain dict so a
Faust table (with its changelog) can hold it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DetectorConfig:
    window_s: int = 60
    min_count: int = 8
    p_threshold: float = 1e-5
    resolve_z: float = 2.0
    share_margin: float = 0.15
    warmup_windows: int = 3
    cooldown_windows: int = 5
    alpha: float = 0.2  # EWMA weight of the newest window
    lambda_floor: float = 1.0
    samples: int = 5
    lateness_windows: int = 1  # windows kept open behind the newest, for out-of-order events
    idle_learn_windows: int = 3  # empty windows in a row that still count as calm; later ones are skipped
    topic_single_ticker_share: float = 0.5  # of the excess negatives: more from one ticker = that ticker's alert


@dataclass
class KeyState:
    windows: dict[str, list] = field(default_factory=dict)  # window index -> [n, k, sample ids]
    watermark: int = -1  # highest window index seen
    closed: int = -1  # highest window folded into the baseline
    windows_seen: int = 0
    ewma_n: float = 0.0
    ewma_k: float = 0.0
    alert_window: int | None = None  # window in which the open alert fired
    cooldown_until: int = -1
    late: int = 0

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

    def observe(self, state: KeyState, key: str, ts: float, negative: bool, event_id: str,
                tickers: tuple[str, ...] = ()) -> list[Decision]:
        """Fold one event into `state` (mutated); return the alerts opened or resolved.

        Windows stay open for `lateness_windows` after the newest one seen, because events of
        one key reach the detector from several input partitions, slightly out of order."""
        window = int(ts // self.cfg.window_s)
        if window <= state.closed:
            state.late += 1  # too late: its window is already in the baseline
            return []
        cell = state.windows.setdefault(str(window), [0, 0, [], {}])
        cell[0] += 1
        if negative:
            cell[1] += 1
            if len(cell[2]) < self.cfg.samples:
                cell[2].append(event_id)
            if key.startswith("topic:"):
                for t in tickers:
                    cell[3][t] = cell[3].get(t, 0) + 1
        decisions = []
        if window > state.watermark:
            state.watermark = window
            decisions += self._close_until(state, key, window - self.cfg.lateness_windows)
        if state.alert_window is None and window >= state.cooldown_until and self._surging(state, cell):
            state.alert_window = window
            decisions.append(self._decision("open", state, key, window, cell))
        return decisions

    def _close_until(self, state: KeyState, key: str, last_open: int) -> list[Decision]:
        """Fold every window before `last_open` into the baseline, oldest first (gaps count as empty)."""
        decisions = []
        start = state.closed + 1 if state.closed >= 0 else min((int(w) for w in state.windows), default=last_open)
        idle = 0
        for w in range(max(start, last_open - 50), last_open):
            n, k, samples, _ = state.windows.pop(str(w), [0, 0, [], {}])
            idle = idle + 1 if n == 0 else 0
            if idle > self.cfg.idle_learn_windows:  # a long silence is a pause (feed or worker down), not calm
                state.closed = w
                continue
            if state.alert_window is not None and w > state.alert_window and self._z(state, k) < self.cfg.resolve_z:
                decisions.append(self._decision("resolve", state, key, w, [n, k, samples, {}]))
                state.alert_window, state.cooldown_until = None, w + 1 + self.cfg.cooldown_windows
            if state.alert_window is None or w > state.alert_window:
                self._learn(state, n, k)
            state.closed = w
        for w in [w for w in state.windows if int(w) < last_open]:  # older than the 50-window catch-up
            state.windows.pop(w)
        return decisions

    def _learn(self, state: KeyState, n: int, k: int) -> None:
        a = self.cfg.alpha if state.windows_seen else 1.0
        state.ewma_n += a * (n - state.ewma_n)
        state.ewma_k += a * (k - state.ewma_k)
        state.windows_seen += 1

    def baseline_rate(self, state: KeyState) -> float:
        return state.ewma_k / state.ewma_n if state.ewma_n > 0 else 0.0

    def _lambda(self, state: KeyState) -> float:
        return max(state.ewma_k + math.sqrt(state.ewma_k), self.cfg.lambda_floor)

    def _z(self, state: KeyState, k: int) -> float:
        lam = max(state.ewma_k, self.cfg.lambda_floor)
        return (k - lam) / math.sqrt(lam)

    def _surging(self, state: KeyState, cell: list) -> bool:
        c, (n, k, _, by_ticker) = self.cfg, cell
        return (state.windows_seen >= c.warmup_windows and k >= c.min_count
                and poisson_sf(k, self._lambda(state)) <= c.p_threshold
                and k / n >= self.baseline_rate(state) + c.share_margin
                and max(by_ticker.values(), default=0) <= c.topic_single_ticker_share * (k - state.ewma_k))

    def _severity(self, p: float) -> str:
        t = self.cfg.p_threshold
        return "high" if p <= t * 1e-4 else "medium" if p <= t * 1e-2 else "low"

    def _decision(self, action: str, state: KeyState, key: str, window: int, cell: list) -> Decision:
        n, k, samples, _ = cell
        z, p = self._z(state, k), poisson_sf(k, self._lambda(state))
        return Decision(action, key, window * self.cfg.window_s, (window + 1) * self.cfg.window_s, n, k,
                        round(self.baseline_rate(state), 4), round(state.ewma_n, 3), round(z, 3), p,
                        self._severity(p), tuple(samples))
