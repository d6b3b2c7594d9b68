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
    count   p = P(X ≥ K), X ~ Poisson(max(b + sqrt(b), floor))   (one sigma above the baseline:
            it is an estimate, and news counts vary more than Poisson; exact far below 1e-16).
            A topic's b is at most what its recent items that are not negative imply at its
            share (a 5-minute EWMA, `volume_half_life_s`): after a step down it follows the volume
    share   P(X ≥ K), X ~ BetaBinomial(N, a, c): K of the window's N at the key's usual share,
            as uncertain as it is: Beta(a, c) from the items the baseline has really seen (the
            EWMA's effective sample size) plus `share_prior` items at the prior share
            `cold_share`; a key that has seen 15 items knows its share far less well than one
            that has seen 5,000. A ticker's belief counts at most `share_cap` items (its mix
            varies from story to story); a topic's, an average over many names, is not capped

A warm key alerts when K ≥ min_count, the count p ≤ p_threshold (1e-6), the share p ≤ share_p
(1e-4: the negatives did not just come with more volume, an ordinary news burst or the market's
open) and K/N is above the usual share by share_margin (0.15) or by share_ratio (1.4x) if
that is less. A key with less than `warmup_s` of history is tested against a prior instead — a
typical key's negative share `cold_share` — with a binomial tail P(X ≥ K), X ~ Binomial(N,
cold_share), and K ≥ cold_min_count: a brand-new ticker in a burst of bad news alerts, a busy
one is not mistaken for a surge. A topic is not tested until it is warm: it is never new, only
unknown to a detector that has just started, and its own share may be far from a ticker's prior.
A topic alert also needs breadth: the window must still be a surge without its top ticker's
excess negatives (those beyond what its own items that are not negative imply at the topic's
share); a surge carried by one name is that name's alert (one incident, one alert), and one
name's ordinary burst of news neither makes nor dilutes a topic surge.

The baseline is robust to what it should not learn: every slice of a window whose count is
unusual (p ≤ learn_p, 1e-3) and whose negatives are unusual for its items as well (share test,
p ≤ learn_share_p, 1e-2) stays out of it, so a slow build-up is not learned as the key's normal
while it builds, and an ordinary burst of news is (held for its count alone, its windows with
the most negatives stayed out, those with the fewest went in, and the key's share was learned
low); a key unusual for longer than `hold_max_s` has a new normal and is
learned again. A key silent for longer than its own rate makes plausible (P ≤ silence_p) is
paused — its feed, a producer or the worker stopped — and the rest of that silence is not
learned as calm (no false alerts when the traffic comes back). An open alert is still tested
through such a pause (not learned), so an alert on a key that has gone quiet resolves once its
window is empty. A key quiet for longer than `key_ttl_s` of event time (no data, nothing open,
no alert) starts anew when it comes back — a cold key — and the worker deletes its state from
the table meanwhile (the same thing, so the offline replay agrees): state stays bounded.

While it is open the alert escalates when its severity band rises; it resolves at the first
final window back to normal — its count (z < resolve_z) or its share: the negatives no more than
resolve_z standard deviations above what the window's items predict at the key's usual share, as
the share test reads it (a key that stays busier than its count baseline after a surge is over
is not still surging) — then a cool-down. Windows are tested when their
slices become final and, before that, as counts arrive, up to the slice that every input
partition has reached (watermark + lateness): an alert goes out within a second of the item
that makes a live surge significant, and a backlog caught up from several partitions makes the
decisions that event-time order makes — no window is judged on the faster partitions' items
alone, and pauses are read from each key's own traffic, not from the watermark's steps. State
is a plain dict so a Faust table can hold it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import orjson
from scipy import special

from stream.counting import SLICE_TICKERS, add_counts, busiest

SEVERITIES = ("low", "medium", "high")
MAX_SOURCES = 8  # sources kept per story in the evidence


@dataclass(frozen=True)
class DetectorConfig:
    slice_s: int = 10
    window_s: int = 120
    min_count: int = 8
    p_threshold: float = 1e-6
    resolve_z: float = 2.0
    share_margin: float = 0.15  # the window's share must be above the key's usual share by this much
    share_ratio: float = 1.4  # ... or by this factor, whichever is less (a topic at 0.22 surging to 0.32)
    share_p: float = 1e-4  # K of N must also be improbable at the key's usual share (a busy hour is not a surge)
    share_cap: float = 200.0  # a ticker's share is known at best as well as 200 items tell: its mix varies by story
    share_prior: float = 50.0  # weight, in items, of the prior share (cold_share) in a key's share estimate
    learn_p: float = 1e-3  # a window this unusual (count test) is held out of the baseline, every slice of it
    # ... when its negatives are also unusual for its items (share test, this p; 1.0: the count alone decides). A
    # window held for its count alone biased the baseline low: an ordinary burst's windows with the most negatives
    # were held, those with the fewest learned (docs/detector.md: a ticker's share learned as 0.24 where it ran 0.36).
    # Looser than the alert's share_p: holding errs toward holding (at 1e-3 a quiet ticker's slow build-up, 6 of 7
    # negative against a share belief still mostly prior, was learned, and the surge then missed)
    learn_share_p: float = 1e-2
    hold_max_s: float = 1800.0  # ... unless it has been unusual this long: then it is the key's new normal
    half_life_s: float = 1800.0
    warmup_s: float = 600.0
    cooldown_s: float = 600.0
    lambda_floor: float = 1.0
    cold_share: float = 0.35  # prior negative share of a key without history (typical tickers: 0.15-0.30)
    cold_min_count: int = 15
    samples: int = 5
    topic_top_tickers: int = 1  # a topic surge needs breadth: it is still one without its top ticker's negatives
    # ... and, with this, without its items too: it recovers surges a member's ordinary burst dilutes, but a
    # surge on one name whose items the topic holds untagged (a company the directory does not know) then
    # reads as a topic surge too (the demo's $ACME; docs/detector.md): off
    topic_breadth_items: bool = False
    # breadth takes out the top ticker's *excess* negatives: those beyond what its own items that are not negative
    # imply at the topic's usual share (a surge on one name: nearly all its negatives; a member in an ordinary
    # burst at its usual mix: next to none, where taking out its negatives alone left its neutral items to dilute
    # the rest). The top ticker is the one with the most excess. False: its negatives, all of them (before)
    topic_breadth_excess: bool = True
    # a topic's usual share for a window is what its members' own usual shares predict for the window's
    # mix of members (learned per member ticker within the topic, each shrunk toward the topic's share
    # by `member_prior` items), not one share for every mix. Opt-in: it raised topic recall on seed 13
    # (0.85 -> 0.95) but also a topic alert when two names surged together in the short chaos run, one
    # that cannot resolve while the window holds them (docs/detector.md)
    topic_member_shares: bool = False
    member_prior: float = 30.0
    member_half_life_s: float = 21600.0  # of the members' EWMA (0: the key's half_life_s): a member's share is a
    # slow property, and a member seen over 30 minutes has too few items in the topic to tell its share
    max_members: int = 64  # member tickers learned per topic, the busiest
    slice_tickers: int = SLICE_TICKERS  # tickers a topic's slice keeps (the busiest): a flood of distinct cashtags made
    # one slice hold thousands, the key's state (rewritten per batch, one changelog record) past 1 MB
    pause_s: float = 900.0  # (the watermark's pauses: reported, no longer used here; see silence_p)
    silence_p: float = 1e-6  # a key's silence this improbable at its own rate is a pause: not learned as calm
    lateness_s: float = 30.0  # of the watermark (stream.watermark): watermark + lateness = every partition's newest
    key_ttl_s: float = 86400.0  # a key quiet (no data, nothing open) this long in event time starts anew (0: never)
    max_keys: int = 100_000  # keys held at most (~3 KB each): past it the quiet ones seen longest ago go first,
    # as if their TTL had passed (a flood of distinct spam cashtags); 0: no cap
    # a topic's count test expects at most the negatives its recent items that are not negative
    # imply at its usual share: after a step down in volume (the market's close, the end of its
    # members' bursts) the 30-minute baseline still expects the busier count for a while, and a
    # surge that doubles the topic's negatives stays within it (docs/detector.md). A busier topic
    # keeps the baseline. Not for tickers: not measured with the volume below (read from the
    # window itself, a quiet ticker's window of 10 items, all negative, passed the count test)
    topic_count_follows_volume: bool = True
    # ... the volume it reads: an EWMA of the topic's items that are not negative per slice (this half-life),
    # learned one window late and not from held-out windows, so a surge that displaces other items (the demo's
    # constant-rate feed) is not read as a step down, the evening's sustained one is, within ~15 minutes.
    # 0: the tested window's own (as first built; it raised the demo's topic:legal_regulation beside $ACME)
    volume_half_life_s: float = 300.0
    # stories (core.stories): a copy of a story already counted adds this much (the first of a story adds 1) ...
    story_copy_weight: float = 0.1
    story_copy_cap: float = 1.0  # ... and all copies of one story together at most this much
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
    recent: list[list] = field(default_factory=list)  # [n, k, {ticker: k}, sample ids] of the last `w` final
    # slices (the ids: an alert decided on closed slices still shows its evidence; state restored from
    # before they were kept has three elements)
    history: int = 0  # final slices observed (pauses excluded)
    raw_n: float = 0.0  # bias-corrected EWMA of items and negatives per slice: raw / weight
    raw_k: float = 0.0
    weight: float = 0.0
    alert: dict | None = None  # the open alert: start, revision, severity, evidence
    cooldown_until: int = -1
    late: int = 0
    first: int = -1  # the key's first slice with data: its history starts there
    silent: int = 0  # empty final slices since the key's last data
    silence_max: int = -1  # how many of them are plausible at the key's rate (-1: any number)
    held: int = 0  # the oldest `held` slices of `recent` were in an unusual window: not learned
    unusual: int = 0  # consecutive final windows that were unusual
    part: int = -1  # the scored-topic partition of the key (set by the worker)
    last: int = -1  # the key's newest slice with data (its expiry counts from there)
    stories: dict[str, dict] = field(default_factory=dict)  # slice -> {story id: [negative copies, [sources]]}
    members: dict[str, list] = field(default_factory=dict)  # topic keys: ticker -> [raw n, raw k], EWMA as raw_n/raw_k
    member_weight: float = 0.0  # ... whose weight (the members' own half-life)
    raw_v: float = 0.0  # topic keys (topic_count_follows_volume): EWMA of items not negative per slice, as raw_v /
    v_weight: float = 0.0  # ... v_weight (half-life volume_half_life_s)

    def to_dict(self) -> dict:
        """A deep copy, as plain JSON values (what the table's changelog stores): orjson's round
        trip is ~25x faster than dataclasses.asdict, which was 7 % of the worker at full rate."""
        return orjson.loads(orjson.dumps(self.__dict__))

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
    # the window's negative stories, most copies first: (story id, negative copies in the window,
    # sources); empty where the counts carry no stories. n and negatives count stories (a copy
    # adds story_copy_weight), rounded to whole numbers here; the tests use the exact weights.
    stories: tuple[tuple[str, int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Cell:
    """Counts of one key in one slice from one batch: n and k are story-weighted (an item of
    no known story, or the first of its story, counts 1; stream.counting.story_weight)."""

    slice: int
    n: float
    k: float
    samples: tuple[str, ...] = ()
    by_ticker: dict | None = None
    stories: dict | None = None  # story id -> [negative copies, [sources]] (at most `samples` stories)


def binomial_sf(k: float, n: float, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): scipy's regularised incomplete beta I_p(k, n - k + 1)
    (= bdtrc(k - 1, n, p) for whole numbers; defined for the story-weighted, fractional counts
    too). Exact far below 1e-16 (tests compare it with the summed series it replaced)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return float(special.betainc(k, n - k + 1.0, p))


def beta_binomial_sf(k: float, n: float, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b): a binomial whose success probability is itself
    uncertain, Beta(a, b). Summed from the k-th term with the terms' ratio, in log space (betaln
    from scipy). Not scipy.stats.betabinom.sf: it computes 1 - cdf and said 8.0e-12 where the tail
    is 8.7e-282 (k 2401 of 3000, Beta(600, 1400)), at 5x the time (docs/detector.md).
    Fractional (story-weighted) k and n are rounded to whole items."""
    k, n = round(k), round(n)
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_term = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                + float(special.betaln(k + a, n - k + b)) - float(special.betaln(a, b)))
    total, ratio = 1.0, 1.0
    for i in range(k, n):
        ratio *= (n - i) / (i + 1) * (i + a) / (n - i - 1 + b)
        total += ratio
        if ratio < 1e-17 * total:
            break
    return min(1.0, math.exp(log_term + math.log(total)))


def poisson_sf(k: float, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam): scipy's regularised lower incomplete gamma P(k, lam)
    (= pdtrc(k - 1, lam) for whole numbers; smooth between them for story-weighted counts).
    Accurate far below 1e-16, and faster than the summed series it replaced."""
    if k <= 0:
        return 1.0
    return float(special.gammainc(k, lam))


class SpikeDetector:
    def __init__(self, config: DetectorConfig | None = None):
        self.cfg = config or DetectorConfig()
        self.w = self.cfg.w
        self.kmin = min(self.cfg.min_count, self.cfg.cold_min_count)  # below this no window can open an alert
        half_life = self.cfg.member_half_life_s or self.cfg.half_life_s
        self.member_alpha = 1.0 - 0.5 ** (self.cfg.slice_s / half_life)
        v = self.cfg.volume_half_life_s
        self.volume_alpha = 1.0 - 0.5 ** (self.cfg.slice_s / v) if v > 0 else 0.0

    # -- inputs ------------------------------------------------------------------------------
    def add(self, st: KeyState, key: str, cells: list[Cell], batch: int, watermark: float | None,
            pauses: tuple = ()) -> tuple[list[Decision], int]:
        """Fold one batch's counts for `key`; returns (decisions, events behind the watermark)."""
        if self.cfg.key_ttl_s:
            ref = max([c.slice for c in cells], default=-1)
            if watermark is not None:
                ref = max(ref, int(watermark // self.cfg.slice_s) - 1)
            if self.expired(st, ref):  # quiet longer than key_ttl_s: a new key (deleted or not, the same)
                part = st.part
                st.__init__()
                st.part = part
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
            st.last = max(st.last, c.slice)
            cell[0] = add_counts(cell[0], c.n)  # (the same sum in any batching)
            cell[1] = add_counts(cell[1], c.k)
            cell[2] = (cell[2] + list(c.samples))[: self.cfg.samples]
            for t, v in (c.by_ticker or {}).items():
                cell[3][t] = _add_nk(cell[3].get(t), v)
            if len(cell[3]) > self.cfg.slice_tickers > 0:
                cell[3] = busiest(cell[3], self.cfg.slice_tickers)
            if c.stories:
                self._add_stories(st.stories.setdefault(str(c.slice), {}), c.stories)
            newest = c.slice if newest is None else max(newest, c.slice)
        st.late += late
        if st.closed < 0 and newest is not None and watermark is not None:
            st.closed = int(watermark // self.cfg.slice_s) - 1
        if newest is not None and watermark is not None:
            # test now, before the slices are final, every window up to the slice that every input
            # partition has reached (watermark + lateness is the slowest partition's newest event):
            # further ahead a window holds only the faster partitions' items, and a backlog would
            # decide on part of the data what event-time order decides on all of it
            ready = min(newest, int((watermark + self.cfg.lateness_s) // self.cfg.slice_s))
            if ready - st.closed <= self.w:  # and the baseline is current
                for s in range(max(st.closed + 1, ready - self.w + 1), ready + 1):
                    decisions += self._evaluate(st, key, s, final=False)
        return decisions, late

    def _add_stories(self, into: dict, stories: dict) -> None:
        """Negative copies per story in a slice: at most `samples` stories and MAX_SOURCES sources each."""
        for sid, (copies, sources) in stories.items():
            entry = into.get(sid)
            if entry is None:
                if len(into) >= self.cfg.samples:
                    continue
                entry = into[sid] = [0, []]
            entry[0] += copies
            entry[1] = list(dict.fromkeys(entry[1] + list(sources)))[:MAX_SOURCES]

    def advance(self, st: KeyState, key: str, watermark: float, pauses: tuple = ()) -> list[Decision]:
        """Finalise every slice that ends at or before `watermark`, oldest first. (`pauses`, the
        watermark's big steps, is no longer used: see `_silence`.)"""
        last = int(watermark // self.cfg.slice_s) - 1
        if st.closed < 0:  # a new key: nothing before the watermark (or its first counts) to finalise
            st.closed = min([last] + [int(s) - 1 for s in st.open])
        decisions = []
        while st.closed < last:
            if st.alert is None and not any(r[0] for r in st.recent):
                upto = min([int(s) - 1 for s in st.open] + [last])  # the slice before the next with data
                if upto > st.closed:
                    self._skip_quiet(st, upto)
                    continue
            s = st.closed + 1
            decisions += self._finalise(st, key, s)
        return decisions

    def expired(self, st: KeyState, upto: int) -> bool:
        """Has the key been quiet (no data, no open slice, no alert) for
        longer than key_ttl_s by slice `upto`? Its state can go: it comes back as a new key.
        Decided from the key's own data and the slice given, so the worker (which also deletes
        such keys from its table) and the offline replay agree."""
        ttl = self.cfg.key_ttl_s
        if not ttl or st.open or st.alert is not None:  # (a paused key's recent window may not be empty)
            return False
        newest = st.last if st.last >= 0 else st.closed  # (a state from before `last` was kept)
        return newest >= 0 and (upto - newest) * self.cfg.slice_s > ttl

    # -- slices -----------------------------------------------------------------------------
    def _finalise(self, st: KeyState, key: str, s: int) -> list[Decision]:
        if st.first < 0 or s < st.first:  # before the key existed: nothing to learn or test
            st.closed = s
            return []
        paused = False
        if str(s) in st.open:
            st.silent = 0
        elif not self._silence(st, 1):
            if st.alert is None:  # paused: not tested, not learned
                st.closed = s
                return []
            paused = True  # ... but an open alert is tested until it resolves (a key gone quiet
            # mid-alert must not keep it open for ever); those empty slices are not learned
        decisions = self._evaluate(st, key, s, final=True)
        unusual = self._unusual(st, key, s)
        n, k, ids, tickers = st.open.pop(str(s), [0, 0, [], {}, []])[:4]
        st.closed = s
        self._forget_stories(st)
        st.recent.append([n, k, tickers, list(ids)])
        if not paused:
            st.history += 1
        if unusual or paused:  # every slice of an unusual window stays out of the baseline
            st.held = len(st.recent)
        if len(st.recent) > self.w:
            old = st.recent.pop(0)
            if st.held > 0:
                st.held -= 1
            else:  # (while an alert is open too: its surge's windows are held, what is usual is learned)
                self._learn(st, old[0], old[1], 1, old[2] if self._members_of(key) else None, self._volume_of(key))
        return decisions

    def _forget_stories(self, st: KeyState) -> None:
        """Stories of slices no window can reach any more."""
        if st.stories:
            for sl in [sl for sl in st.stories if int(sl) <= st.closed - self.w]:
                del st.stories[sl]

    def _unusual(self, st: KeyState, key: str, s: int) -> bool:
        """Is the final window ending at `s` unusual enough (more negatives than the baseline
        allows, p <= learn_p, and more than its items imply at the key's usual share, p <=
        learn_share_p) to be kept out of the baseline, every slice of it? A slow build-up is then
        not learned as the key's normal while it builds. An ordinary burst of news — more items at
        the usual mix — is learned: held for its count alone, its windows with the most negatives
        stayed out and those with the fewest went in, and the key's share and count were learned
        low (then its next burst read as a surge). A key unusual for longer than `hold_max_s` (a
        name in the news for days) has a new normal: it is learned again."""
        b, _, share, warm = self._baseline(st)
        if not warm:
            return False
        lam = max(b + math.sqrt(b), self.cfg.lambda_floor)
        k = self._negatives(st, s)
        unusual = k > lam + 2 * math.sqrt(lam) + 1 and poisson_sf(k, lam) <= self.cfg.learn_p
        if unusual and self.cfg.learn_share_p < 1.0:
            n, k, _, tickers = self._window(st, s)
            _, a, c = self._window_share(st, key, share, n, tickers if self._members_of(key) else None)
            unusual = beta_binomial_sf(k, n, a, c) <= self.cfg.learn_share_p
        st.unusual = st.unusual + 1 if unusual else 0
        return unusual and st.unusual * self.cfg.slice_s <= self.cfg.hold_max_s

    def _skip_quiet(self, st: KeyState, upto: int) -> None:
        """Empty slices up to `upto` on a key whose recent window is empty: learned in closed form
        (as many as the silence rule allows)."""
        if st.first < 0 or upto < st.first:
            st.closed = upto
            return
        observed = self._silence(st, upto - max(st.closed, st.first - 1))
        length = len(st.recent) + observed
        self._learn(st, 0, 0, max(0, length - self.w), volume=st.v_weight > 0)
        st.recent = [[0, 0, {}] for _ in range(min(self.w, length))]
        st.held = 0
        st.history += observed
        st.closed = upto
        self._forget_stories(st)

    def _silence(self, st: KeyState, empty: int) -> int:
        """How many of `empty` more empty final slices are learned. A key silent for longer than
        its own rate makes plausible (P <= silence_p) is paused (its feed, a producer, the
        worker stopped): the rest of that silence is neither learned as calm nor tested, so it
        raises no false alert when the traffic comes back. Decided from the key's own data, not
        from how far the watermark moved at once, so a backlog learns what event-time order does."""
        if st.silent == 0:  # a silence begins: how long one can plausibly last, at the rate now
            per_n = st.raw_n / st.weight if st.weight > 0 else 0.0
            st.silence_max = int(-math.log(self.cfg.silence_p) / per_n) + 1 if per_n > 0 else -1
        allowed = empty if st.silence_max < 0 else max(0, min(empty, st.silence_max - st.silent))
        st.silent += empty
        return allowed

    def _learn(self, st: KeyState, n: int, k: int, times: int, tickers: dict | None = None,
               volume: bool = False) -> None:
        if times <= 0:
            return
        keep = (1.0 - self.cfg.alpha) ** times
        st.raw_n = st.raw_n * keep + (1 - keep) * n
        st.raw_k = st.raw_k * keep + (1 - keep) * k
        st.weight = st.weight * keep + (1 - keep)
        if st.members or tickers:
            self._learn_members(st, (1.0 - self.member_alpha) ** times, tickers or {})
        if volume and self.volume_alpha > 0:
            keep = (1.0 - self.volume_alpha) ** times
            st.raw_v = st.raw_v * keep + (1 - keep) * max(0.0, n - k)
            st.v_weight = st.v_weight * keep + (1 - keep)

    def _volume_of(self, key: str) -> bool:
        return self.cfg.topic_count_follows_volume and key.startswith("topic:")

    def _members_of(self, key: str) -> bool:
        return self.cfg.topic_member_shares and key.startswith("topic:")

    def _learn_members(self, st: KeyState, keep: float, tickers: dict) -> None:
        """A topic's member tickers, each an EWMA of its items and negatives within the topic
        (half-life member_half_life_s): the busiest `max_members` are kept."""
        st.member_weight = st.member_weight * keep + (1 - keep)
        for v in st.members.values():
            v[0], v[1] = v[0] * keep, v[1] * keep
        for t, c in tickers.items():
            if isinstance(c, (int, float)):
                continue  # negatives only (counted before items per ticker were): no share to learn
            v = st.members.setdefault(t, [0.0, 0.0])
            v[0], v[1] = v[0] + (1 - keep) * c[0], v[1] + (1 - keep) * c[1]
        if len(st.members) > self.cfg.max_members:
            busiest = sorted(st.members.items(), key=lambda kv: (-kv[1][0], kv[0]))[: self.cfg.max_members]
            st.members = dict(busiest)

    def _mix_share(self, st: KeyState, share: float, n: float, tickers: dict) -> float:
        """The share a topic's window is expected to have for its mix of members: each member's
        items at the member's usual share (shrunk toward the topic's `share` by member_prior items),
        the rest at the topic's."""
        if not st.members or not tickers or n <= 0 or st.member_weight <= 0:
            return share
        seen = 1.0 / (st.member_weight * self.member_alpha)  # raw / weight is per slice; about 1 / alpha slices seen
        prior, mentions, expected = self.cfg.member_prior, 0.0, 0.0
        for t, c in tickers.items():
            nt = _nk(c)[0]
            if nt <= 0:
                continue
            m = st.members.get(t)
            usual = share if m is None else (m[1] * seen + prior * share) / (m[0] * seen + prior)
            mentions, expected = mentions + nt, expected + nt * usual
        if mentions <= 0:
            return share
        covered = min(mentions, n)  # an item naming two members counts in both
        return (covered * expected / mentions + (n - covered) * share) / n

    # -- the test ---------------------------------------------------------------------------
    def _window(self, st: KeyState, s: int) -> tuple[int, int, list[str], dict]:
        """Sums over the `w` slices ending at `s`: final ones from `recent`, the rest open."""
        w, n, k, found, tickers = self.w, 0, 0, [], {}
        for i in range(s - w + 1, s + 1):
            if i <= st.closed:
                back = st.closed - i
                r = st.recent[-1 - back] if back < len(st.recent) else None
                cell = r and [r[0], r[1], r[2], r[3] if len(r) > 3 else ()]
            else:
                cell = st.open.get(str(i))
                cell = cell and [cell[0], cell[1], cell[3], cell[2]]
            if cell:
                n, k = add_counts(n, cell[0]), add_counts(k, cell[1])
                found.append((cell[1], i, cell[3]))
                for t, c in cell[2].items():
                    tickers[t] = _add_nk(tickers.get(t), c)
        # evidence comes from the slices that carry the spike: most negatives first, then newest
        samples = [sid for _, _, ids in sorted(found, key=lambda f: (-f[0], -f[1])) for sid in ids]
        samples += (st.alert or {}).get("samples", [])
        return n, k, list(dict.fromkeys(samples))[: self.cfg.samples], tickers

    def _window_stories(self, st: KeyState, s: int) -> list:
        """The window's negative stories, most copies first: [story id, copies, [sources]]."""
        merged: dict = {}
        for i in range(s - self.w + 1, s + 1):
            for sid, (copies, sources) in st.stories.get(str(i), {}).items():
                entry = merged.setdefault(sid, [0, []])
                entry[0] += copies
                entry[1] = list(dict.fromkeys(entry[1] + list(sources)))[:MAX_SOURCES]
        top = sorted(merged.items(), key=lambda kv: (-kv[1][0], kv[0]))[: self.cfg.samples]
        return [[sid, round(c), src] for sid, (c, src) in top] or (st.alert or {}).get("stories", [])

    def _baseline(self, st: KeyState) -> tuple[float, float, float, bool]:
        """(expected negatives, expected items, expected share, warm) per window."""
        warm = st.history * self.cfg.slice_s >= self.cfg.warmup_s and st.weight > 0
        if not warm:
            return 0.0, 0.0, self.cfg.cold_share, False
        per_k, per_n = st.raw_k / st.weight, st.raw_n / st.weight
        return per_k * self.w, per_n * self.w, (per_k / per_n if per_n > 0 else 0.0), True

    def _share_belief(self, st: KeyState, key: str = "") -> tuple[float, float]:
        """Beta(a, b) for the key's negative share: the items its baseline has really seen (the
        EWMA's effective sample size) plus `share_prior` items at the prior share. A key that
        has seen 15 items knows its share far less well than one that has seen 5,000."""
        q, wt = 1.0 - self.cfg.alpha, st.weight
        ess = (wt / self.cfg.alpha) ** 2 * (1 - q * q) / (1 - (1 - wt) ** 2) if wt > 0 else 0.0
        per_k, per_n = st.raw_k / wt, st.raw_n / wt
        prior = self.cfg.share_prior
        a, c = per_k * ess + prior * self.cfg.cold_share, (per_n - per_k) * ess + prior * (1 - self.cfg.cold_share)
        cap = self.cfg.share_cap
        if cap and a + c > cap and key.startswith("ticker:"):
            a, c = a * cap / (a + c), c * cap / (a + c)
        return a, c

    def _stats(self, st: KeyState, key: str, n: int, k: int, tickers: dict) -> tuple[bool, float, float, float]:
        """(surging, p, z, expected negatives). Warm keys: Poisson against their own baseline;
        cold keys: binomial against the prior share of a typical key, k of the window's n."""
        members = tickers if self._members_of(key) else None
        surging, p, z, b = self._test(st, key, n, k, members)
        if surging and key.startswith("topic:") and self.cfg.topic_breadth_excess and not self.cfg.topic_breadth_items:
            surging = self._breadth(st, key, n, k, tickers, members is not None)
        elif surging and key.startswith("topic:"):  # breadth: still a surge without its top ticker's negatives
            ranked = sorted(tickers.items(), key=lambda kv: (-_nk(kv[1])[1], kv[0]))
            top = [_nk(v) for _, v in ranked[: self.cfg.topic_top_tickers]]
            kt = sum(t[1] for t in top)
            nt = sum(t[0] for t in top) if self.cfg.topic_breadth_items else kt
            rest = dict(ranked[self.cfg.topic_top_tickers:]) if members is not None else None
            surging = self._test(st, key, n - nt, k - kt, rest)[0]
        return surging, p, z, b

    def _breadth(self, st: KeyState, key: str, n: float, k: float, tickers: dict, members: bool) -> bool:
        """A topic surge's breadth: is the window still a surge without its top tickers' *excess*
        negatives — those beyond what each ticker's own items that are not negative imply at its
        usual share in the topic (the topic's; with topic_member_shares, the member's)? A surge on
        one name is nearly all excess and goes; a member in an ordinary burst at its usual mix has
        next to none, and its items stay in the window at that mix (taking out its negatives
        alone left its neutral items to dilute the rest: seed 13's and 15's missed topic surges)."""
        share = self._baseline(st)[2]
        excess = []
        for t, v in tickers.items():
            nt, kt = _nk(v)
            s = self._mix_share(st, share, nt, {t: v}) if members else share
            implied = (nt - kt) * s / (1.0 - s) if s < 1.0 else kt
            excess.append((-min(kt, max(0.0, kt - implied)), t, nt, kt))
        excess.sort()
        top = excess[: self.cfg.topic_top_tickers]
        e = -sum(x[0] for x in top)
        rest = None
        if members:
            rest = dict(tickers)
            for x in top:
                rest[x[1]] = [x[2] + x[0], x[3] + x[0]]
        return self._test(st, key, n - e, k - e, rest)[0]

    def _window_share(self, st: KeyState, key: str, share: float, n: float,
                      members: dict | None) -> tuple[float, float, float]:
        """(usual share, Beta a, Beta b) for a window of n items: the key's share belief, or for a
        topic read against its members' mix (`members`), centred on the mix's share, as certain as
        the key's."""
        a, c = self._share_belief(st, key)
        if members is not None:
            share = self._mix_share(st, share, n, members)
            a, c = share * (a + c), (1 - share) * (a + c)
        return share, a, c

    def _test(self, st: KeyState, key: str, n: int, k: int,
              members: dict | None = None) -> tuple[bool, float, float, float]:
        """The surge test of k negatives among n items: (surging, count p, z, expected).
        `members`: a topic window's {ticker: [items, negatives]}, whose mix sets the share tested."""
        c = self.cfg
        b, _, share, warm = self._baseline(st)
        if warm:
            share, a, cc = self._window_share(st, key, share, n, members)
            lam = b
            if c.topic_count_follows_volume and share < 1.0 and key.startswith("topic:"):
                # the volume its other items imply: the topic's recent items not negative (a short EWMA,
                # learned one window late), or the window's own where that is not kept
                if self.volume_alpha > 0:
                    other = st.raw_v / st.v_weight * self.w if st.v_weight > 0 else math.inf
                else:
                    other = n - k
                lam = min(b, other * share / (1.0 - share))
            p = poisson_sf(k, max(lam + math.sqrt(lam), c.lambda_floor))
            need = share + min(c.share_margin, (c.share_ratio - 1) * share)
            if k >= c.min_count and p <= c.p_threshold:
                # and given the window's volume: k of n at the key's share (as uncertain as it is)
                share_p = beta_binomial_sf(k, n, a, cc)
                if share_p > c.share_p:
                    need = 2.0  # the negatives came with the volume: ordinary news, busier
        else:
            b = c.cold_share * n
            p = binomial_sf(k, n, c.cold_share)
            # a cold topic is not tested (module docstring): the cold test is for a name that is new
            # and in bad news; a topic is only unknown, its own share may be far above the prior
            # (the demo's stock_movement: 0.4-0.6, which alerted in its first window in 2 seeds of 40)
            need = 2.0 if key.startswith("topic:") else 0.0
        z = (k - max(b, c.lambda_floor)) / math.sqrt(max(b, c.lambda_floor))
        surging = (k >= (c.min_count if warm else c.cold_min_count) and p <= c.p_threshold and n > 0
                   and k / n >= need)
        return surging, p, z, b

    def _share_z(self, st: KeyState, key: str, n: float, k: float, tickers: dict) -> float:
        """How far the window's negatives stand above what its items predict at the key's usual
        share, in standard deviations of the beta-binomial the share test uses. An alert opens
        only on a share well above the usual one (share_p), so it is over when the share is back,
        even while the key stays busier than its count baseline (a feed's volume stepped up: the
        count z would hold the alert open until the baseline learns the new level, 30 minutes
        on). Cold keys: +inf (their z is already k against the prior share of n)."""
        _, _, share, warm = self._baseline(st)
        if not warm or n <= 0:
            return math.inf
        _, a, c = self._window_share(st, key, share, n, tickers if self._members_of(key) else None)
        m = a + c
        if m <= 0:
            return math.inf
        mean = n * a / m
        var = n * a * c * (m + n) / (m * m * (m + 1))
        return (k - mean) / math.sqrt(var) if var > 0 else (math.inf if k > mean else -math.inf)

    def _severity(self, p: float, k: int, expected: float) -> str:
        ratio = k / max(expected, self.cfg.lambda_floor)
        for name, (p_max, k_min, r_min) in (("high", self.cfg.high), ("medium", self.cfg.medium)):
            if p <= p_max and k >= k_min and ratio >= r_min:
                return name
        return "low"

    def _negatives(self, st: KeyState, s: int) -> int:
        """Negatives in the window ending at `s` (the cheap screen before the full test)."""
        k, closed = 0, st.closed
        if s == closed + 1:  # the usual case: a slice being finalised
            for r in st.recent[1 - self.w:] if self.w > 1 else ():
                k += r[1]
            cell = st.open.get(str(s))
            return k + (cell[1] if cell else 0)
        for i in range(s - self.w + 1, s + 1):
            if i <= closed:
                back = closed - i
                if back < len(st.recent):
                    k += st.recent[-1 - back][1]
            else:
                cell = st.open.get(str(i))
                if cell:
                    k += cell[1]
        return k

    def _evaluate(self, st: KeyState, key: str, s: int, final: bool) -> list[Decision]:
        if st.alert is None and (s < st.cooldown_until or self._negatives(st, s) < self.kmin):
            return []  # too few negatives to open anything: the common case, decided cheaply
        n, k, samples, tickers = self._window(st, s)
        surging, p, z, b = self._stats(st, key, n, k, tickers)
        if st.alert is None:
            if surging and s >= st.cooldown_until:
                st.alert = {"start": (s - self.w + 1) * self.cfg.slice_s, "revision": 0, "slice": s,
                            "severity": self._severity(p, k, b), "samples": samples}
                if st.stories:
                    st.alert["stories"] = self._window_stories(st, s)
                return [self._decision("open", st, key, s, n, k, p, z, b, samples)]
            return []
        severity = self._severity(p, k, b)
        if SEVERITIES.index(severity) > SEVERITIES.index(st.alert["severity"]):
            st.alert.update(severity=severity, revision=st.alert["revision"] + 1, samples=samples)
            if st.stories:
                st.alert["stories"] = self._window_stories(st, s)
            return [self._decision("escalate", st, key, s, n, k, p, z, b, samples)]
        if final and s > st.alert["slice"] and (z < self.cfg.resolve_z
                                                 or self._share_z(st, key, n, k, tickers) < self.cfg.resolve_z):
            d = self._decision("resolve", st, key, s, n, k, p, z, b, samples)
            st.alert, st.cooldown_until = None, s + 1 + int(self.cfg.cooldown_s // self.cfg.slice_s)
            return [d]
        return []

    def _decision(self, action: str, st: KeyState, key: str, s: int, n: int, k: int, p: float, z: float,
                  b: float, samples: list[str]) -> Decision:
        _, base_n, share, _ = self._baseline(st)
        c = self.cfg
        stories = self._window_stories(st, s) if st.stories or "stories" in st.alert else []
        return Decision(action, key, st.alert["start"], (s - c.w + 1) * c.slice_s, (s + 1) * c.slice_s, _num(n),
                        _num(k), round(share, 4), round(base_n, 3), round(b, 3), round(z, 3), p,
                        st.alert["severity"], st.alert["revision"], tuple(samples),
                        tuple((sid, copies, tuple(src)) for sid, copies, src in stories))


def _nk(v) -> tuple[float, float]:
    """A topic cell's per-ticker count: [items, negatives]; a bare number (counts written before
    items were counted per ticker) is negatives only, as they were then read."""
    return (v, v) if isinstance(v, (int, float)) else (v[0], v[1])


def _add_nk(a, b) -> list:
    if a is None:
        return list(_nk(b))
    (an, ak), (bn, bk) = _nk(a), _nk(b)
    return [add_counts(an, bn), add_counts(ak, bk)]



def _num(x: float) -> int:
    """A count as the alert stores it (alert.n / negatives are integers): story-weighted counts rounded."""
    return int(round(x))
