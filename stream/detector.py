"""Spike detector: a plain object fed per-key counts and an event-time watermark.

Counts arrive pre-aggregated per key and time slice (`slice_s`, default 10 s): n items, k of
them negative, a few sample ids, and the batch id they came from (a batch applied twice to a
slice is ignored, so a replay never counts twice). A slice is *final* once the watermark — the
minimum event time over every input partition, minus the allowed lateness — has passed its end.

The surge test looks at a sliding window of `window_s` (default 120 s = 12 slices) ending at
each slice, so a burst counts in full wherever the slice boundaries fall:

    K = negatives in the window, N = items in the window
    b = expected negatives per window: EWMA of the key's own final slices (half-life 30 min,
        learned `window` slices late so that a surge is never part of its own baseline)
    λ = max(b + sqrt(b), floor)       one standard deviation above the baseline: the baseline
                                      is an estimate and news counts vary more than Poisson
    p = P(X ≥ K), X ~ Poisson(λ)      (computed in log space: it goes far below 1e-16)

An alert opens when K ≥ min_count, p ≤ p_threshold and K/N ≥ baseline share + share_margin
(a volume spike of ordinary news is not a negative surge). A key with less than `warmup_s` of
history is tested against a prior instead — a typical key's negative share `cold_share` —
with a binomial tail P(X ≥ K), X ~ Binomial(N, cold_share), and K ≥ cold_min_count: a
brand-new ticker in a burst of bad news alerts, a busy one is not mistaken for a surge. A topic alert also needs breadth: if one ticker carries more than half of
the window's excess negatives, the surge is that ticker's and the topic stays quiet.

While it is open the alert escalates when its severity band rises; it resolves at the first
final window back to normal (z < resolve_z), then a cool-down. Decisions on final slices depend
only on the data, never on arrival order; while a key's baseline is current (live traffic) the
window is also tested as counts arrive, so an alert goes out within seconds of a surge.

A watermark jump longer than `pause_s` is a pause of the feed (or of every producer), not
calm: those slices are not learned. State is a plain dict so a Faust table can hold it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class DetectorConfig:
    slice_s: int = 10
    window_s: int = 120
    min_count: int = 8
    p_threshold: float = 1e-6
    resolve_z: float = 2.0
    share_margin: float = 0.15
    share_p: float = 1e-3  # K of N must also be improbable at the key's usual share (a busy hour is not a surge)
    half_life_s: float = 1800.0
    warmup_s: float = 600.0
    cooldown_s: float = 600.0
    lambda_floor: float = 1.0
    cold_share: float = 0.35  # prior negative share of a key without history (typical tickers: 0.15-0.30)
    cold_min_count: int = 15
    samples: int = 5
    topic_single_ticker_share: float = 0.5  # of the excess negatives: more from one ticker = that ticker's alert
    pause_s: float = 900.0
    # severity bands: (p at most, negatives at least, times the expected count at least)
    medium: tuple[float, int, float] = (1e-12, 20, 3.0)
    high: tuple[float, int, float] = (1e-20, 40, 5.0)

    @property
    def w(self) -> int:
        return max(1, self.window_s // self.slice_s)

    @property
    def alpha(self) -> float:
        return 1.0 - 0.5 ** (self.slice_s / self.half_life_s)


@dataclass
class KeyState:
    open: dict[str, list] = field(default_factory=dict)  # slice -> [n, k, sample ids, {ticker: k}, batch ids]
    closed: int = -1  # newest final slice
    recent: list[list] = field(default_factory=list)  # [n, k, {ticker: k}] of the last `w` final slices
    history: int = 0  # final slices observed (pauses excluded)
    raw_n: float = 0.0  # bias-corrected EWMA of items and negatives per slice: raw / weight
    raw_k: float = 0.0
    weight: float = 0.0
    alert: dict | None = None  # the open alert: start, revision, severity, evidence
    cooldown_until: int = -1
    late: int = 0
    first: int = -1  # the key's first slice with data: its history starts there
    part: int = -1  # the scored-topic partition of the key (set by the worker)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> KeyState:
        return cls(**d) if d else cls()

    def quiet(self) -> bool:
        """Nothing to finalise eagerly: no open slices, no alert, an all-zero recent window."""
        return not self.open and self.alert is None and not any(r[0] for r in self.recent)


@dataclass(frozen=True)
class Decision:
    action: str  # open | escalate | resolve
    key: str
    alert_start: float  # identity of the alert: start of the window it opened on
    window_start: float
    window_end: float
    n: int
    negatives: int
    baseline_rate: float  # expected negative share
    baseline_n: float  # expected items per window
    expected: float  # expected negatives per window (λ before the one-sigma margin)
    z: float
    p_value: float
    severity: str
    revision: int
    sample_event_ids: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """Counts of one key in one slice from one batch."""

    slice: int
    n: int
    k: int
    samples: tuple[str, ...] = ()
    by_ticker: dict | None = None


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed from the k-th term in log space."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam), summed from the k-th term (accurate far below 1e-16)."""
    if k <= 0:
        return 1.0
    if k <= lam:
        cdf, term = 0.0, math.exp(-lam)
        for i in range(k):
            cdf += term
            term *= lam / (i + 1)
        return max(0.0, 1.0 - cdf)
    log_term = -lam + k * math.log(lam) - math.lgamma(k + 1)
    total, ratio, i = 1.0, 1.0, k
    while ratio > 1e-17 and i < k + 10_000:
        i += 1
        ratio *= lam / i
        total += ratio
    return math.exp(log_term) * total


class SpikeDetector:
    def __init__(self, config: DetectorConfig | None = None):
        self.cfg = config or DetectorConfig()

    # -- inputs ------------------------------------------------------------------------------
    def add(self, st: KeyState, key: str, cells: list[Cell], batch: int, watermark: float | None,
            pauses: tuple = ()) -> tuple[list[Decision], int]:
        """Fold one batch's counts for `key`; returns (decisions, events behind the watermark)."""
        decisions = self.advance(st, key, watermark, pauses) if watermark is not None else []
        late, newest = 0, None
        for c in cells:
            if c.slice <= st.closed:
                late += c.n  # its slice is final: beyond the allowed lateness
                continue
            cell = st.open.setdefault(str(c.slice), [0, 0, [], {}, []])
            if batch in cell[4]:
                continue  # the same batch again (a replay): already counted
            cell[4].append(batch)
            st.first = c.slice if st.first < 0 else min(st.first, c.slice)
            cell[0] += c.n
            cell[1] += c.k
            cell[2] = (cell[2] + list(c.samples))[: self.cfg.samples]
            for t, k in (c.by_ticker or {}).items():
                cell[3][t] = cell[3].get(t, 0) + k
            newest = c.slice if newest is None else max(newest, c.slice)
        st.late += late
        if st.closed < 0 and newest is not None and watermark is not None:
            st.closed = int(watermark // self.cfg.slice_s) - 1
        if newest is not None and newest - st.closed <= self.cfg.w:  # baseline is current: test now
            decisions += self._evaluate(st, key, newest, final=False)
        return decisions, late

    def advance(self, st: KeyState, key: str, watermark: float, pauses: tuple = ()) -> list[Decision]:
        """Finalise every slice that ends at or before `watermark`, oldest first."""
        last = int(watermark // self.cfg.slice_s) - 1
        if st.closed < 0:  # a new key: nothing before the watermark (or its first counts) to finalise
            st.closed = min([last] + [int(s) - 1 for s in st.open])
        decisions = []
        while st.closed < last:
            if st.alert is None and not any(r[0] for r in st.recent):
                upto = min([int(s) - 1 for s in st.open] + [last])  # the slice before the next with data
                if upto > st.closed:
                    self._skip_quiet(st, upto, pauses)
                    continue
            s = st.closed + 1
            decisions += self._finalise(st, key, s, in_pause(s, self.cfg.slice_s, pauses))
        return decisions

    # -- slices -----------------------------------------------------------------------------
    def _finalise(self, st: KeyState, key: str, s: int, paused: bool) -> list[Decision]:
        if st.first < 0 or s < st.first:  # before the key existed: nothing to learn or test
            st.closed = s
            return []
        # a pause (the watermark jumped) is not learned as calm, but a slice in it that holds data
        # is still tested: a sparse backlog moves the watermark in big steps too
        decisions = [] if paused and str(s) not in st.open else self._evaluate(st, key, s, final=True)
        n, k, _, tickers = st.open.pop(str(s), [0, 0, [], {}, []])[:4]
        st.closed = s
        if paused and not n:
            return decisions
        st.recent.append([n, k, tickers])
        st.history += 1
        if len(st.recent) > self.cfg.w:
            old_n, old_k, _ = st.recent.pop(0)
            if st.alert is None:
                self._learn(st, old_n, old_k, 1)
        return decisions

    def _skip_quiet(self, st: KeyState, upto: int, pauses: tuple) -> None:
        """Empty slices up to `upto` on a key whose recent window is empty: learned in closed form."""
        if st.first < 0 or upto < st.first:
            st.closed = upto
            return
        lo, hi = (max(st.closed, st.first - 1) + 1) * self.cfg.slice_s, (upto + 1) * self.cfg.slice_s
        paused = sum(max(0.0, min(e, hi) - max(b, lo)) for b, e in pauses) // self.cfg.slice_s
        observed = max(0, upto - max(st.closed, st.first - 1) - int(paused))
        length = len(st.recent) + observed
        self._learn(st, 0, 0, max(0, length - self.cfg.w))
        st.recent = [[0, 0, {}] for _ in range(min(self.cfg.w, length))]
        st.history += observed
        st.closed = upto

    def _learn(self, st: KeyState, n: int, k: int, times: int) -> None:
        if times <= 0:
            return
        keep = (1.0 - self.cfg.alpha) ** times
        st.raw_n = st.raw_n * keep + (1 - keep) * n
        st.raw_k = st.raw_k * keep + (1 - keep) * k
        st.weight = st.weight * keep + (1 - keep)

    # -- the test ---------------------------------------------------------------------------
    def _window(self, st: KeyState, s: int) -> tuple[int, int, list[str], dict]:
        """Sums over the `w` slices ending at `s`: final ones from `recent`, the rest open."""
        w, n, k, found, tickers = self.cfg.w, 0, 0, [], {}
        for i in range(s - w + 1, s + 1):
            if i <= st.closed:
                back = st.closed - i
                cell = [*st.recent[-1 - back], ()] if back < len(st.recent) else None
            else:
                cell = st.open.get(str(i))
                cell = cell and [cell[0], cell[1], cell[3], cell[2]]
            if cell:
                n, k = n + cell[0], k + cell[1]
                found.append((cell[1], i, cell[3]))
                for t, c in cell[2].items():
                    tickers[t] = tickers.get(t, 0) + c
        # evidence comes from the slices that carry the spike: most negatives first, then newest
        samples = [sid for _, _, ids in sorted(found, key=lambda f: (-f[0], -f[1])) for sid in ids]
        samples += (st.alert or {}).get("samples", [])
        return n, k, list(dict.fromkeys(samples))[: self.cfg.samples], tickers

    def _baseline(self, st: KeyState) -> tuple[float, float, float, bool]:
        """(expected negatives, expected items, expected share, warm) per window."""
        warm = st.history * self.cfg.slice_s >= self.cfg.warmup_s and st.weight > 0
        if not warm:
            return 0.0, 0.0, self.cfg.cold_share, False
        per_k, per_n = st.raw_k / st.weight, st.raw_n / st.weight
        return per_k * self.cfg.w, per_n * self.cfg.w, (per_k / per_n if per_n > 0 else 0.0), True

    def _stats(self, st: KeyState, key: str, n: int, k: int, tickers: dict) -> tuple[bool, float, float, float]:
        """(surging, p, z, expected negatives). Warm keys: Poisson against their own baseline;
        cold keys: binomial against the prior share of a typical key, k of the window's n."""
        c = self.cfg
        b, _, share, warm = self._baseline(st)
        if warm:
            p = poisson_sf(k, max(b + math.sqrt(b), c.lambda_floor))
            need = share + c.share_margin
            if k >= c.min_count and p <= c.p_threshold and binomial_sf(k, n, min(0.99, max(share, 0.01))) > c.share_p:
                need = 2.0  # the negatives came with the volume: ordinary news, busier
        else:
            b = c.cold_share * n
            p = binomial_sf(k, n, c.cold_share)
            need = 0.0
        z = (k - max(b, c.lambda_floor)) / math.sqrt(max(b, c.lambda_floor))
        surging = (k >= (c.min_count if warm else c.cold_min_count) and p <= c.p_threshold and n > 0
                   and k / n >= need
                   and (not key.startswith("topic:")
                        or max(tickers.values(), default=0) <= c.topic_single_ticker_share * (k - b)))
        return surging, p, z, b

    def _severity(self, p: float, k: int, expected: float) -> str:
        ratio = k / max(expected, self.cfg.lambda_floor)
        for name, (p_max, k_min, r_min) in (("high", self.cfg.high), ("medium", self.cfg.medium)):
            if p <= p_max and k >= k_min and ratio >= r_min:
                return name
        return "low"

    def _evaluate(self, st: KeyState, key: str, s: int, final: bool) -> list[Decision]:
        n, k, samples, tickers = self._window(st, s)
        surging, p, z, b = self._stats(st, key, n, k, tickers)
        if st.alert is None:
            if surging and s >= st.cooldown_until:
                st.alert = {"start": (s - self.cfg.w + 1) * self.cfg.slice_s, "revision": 0, "slice": s,
                            "severity": self._severity(p, k, b), "samples": samples}
                return [self._decision("open", st, key, s, n, k, p, z, b, samples)]
            return []
        severity = self._severity(p, k, b)
        if SEVERITIES.index(severity) > SEVERITIES.index(st.alert["severity"]):
            st.alert.update(severity=severity, revision=st.alert["revision"] + 1, samples=samples)
            return [self._decision("escalate", st, key, s, n, k, p, z, b, samples)]
        if final and s > st.alert["slice"] and z < self.cfg.resolve_z:
            d = self._decision("resolve", st, key, s, n, k, p, z, b, samples)
            st.alert, st.cooldown_until = None, s + 1 + int(self.cfg.cooldown_s // self.cfg.slice_s)
            return [d]
        return []

    def _decision(self, action: str, st: KeyState, key: str, s: int, n: int, k: int, p: float, z: float,
                  b: float, samples: list[str]) -> Decision:
        _, base_n, share, _ = self._baseline(st)
        c = self.cfg
        return Decision(action, key, st.alert["start"], (s - c.w + 1) * c.slice_s, (s + 1) * c.slice_s, n, k,
                        round(share, 4), round(base_n, 3), round(b, 3), round(z, 3), p,
                        st.alert["severity"], st.alert["revision"], tuple(samples))


def in_pause(s: int, slice_s: int, pauses: tuple) -> bool:
    return any(b <= s * slice_s and (s + 1) * slice_s <= e for b, e in pauses)
