"""Alert quality of the spike detector on simulated days (a benchmark, not a test).

    python bench/alerts.py --days 1 --keys 1000 --seed 7

Traffic (seeded, numpy): `keys` background tickers, each with a rate log-uniform from one
mention per 15 min to one per 5 s at the US market's busiest hours, a day curve (night 0.12,
pre/after market 0.35, 13:30-20:00 UTC 1.0, abrupt steps like the opening bell), its own
negative share (uniform 0.10-0.35) and three of 20 topics. Ordinary news: about one burst per
ticker per day (Poisson), 5-15x the ticker's volume for 10-40 minutes, with the ticker's usual
negative share give or take 0.05 (busy, not negative).

Planted surges (`--surges` per day, the five shapes in turn, spread over the day with jitter);
a ticker surge lands on its own host ticker, with its own flat all-day background (topics 01/02)
so that the host is warm and as quiet or busy as named at any hour:
  sharp  20 negatives within 60 s on a quiet ticker (one mention per 5 min, share 0.2)
  quiet  15 negatives within 110 s on a quiet ticker (the smallest surge the issue names)
  slow   36 negatives over 8 minutes on a quiet ticker, rising (density grows linearly)
  busy   60 negatives within 2 min on a busy ticker (one mention per 5 s, share 0.2)
  topic  as many negatives as the topic had per 2 minutes over the 10 minutes before (bursts of its
         member tickers included), and at least 60, within 2 min, spread over 20 of its background
         tickers: the topic's negatives (at least) double
  stories     15 different negative stories within 2 min on a quiet ticker, each with 1-3 copies
              (core.stories: the first novel, the rest copies): must alert
  syndicated  ONE negative story copied 20-40 times across sources within 2 min on a quiet ticker:
              must NOT alert (a copy adds story_copy_weight, a story's copies at most story_copy_cap);
              an alert on it is counted as false and in its own column

Replayed through the detector the way the worker drives it (stream.offline): in event-time
order (one partition), and as a backlog on 4 partitions consumed in random order (batches of
256). An alert is a detection of a planted surge when it is on the surge's key and its window
ends between 5 minutes before and 20 minutes after the surge starts; every other alert is
false. Prints recall by surge type, alerts per detected surge, false alerts per day per 1,000
keys (every ticker and topic that had traffic), the median detection delay (event time from
the surge's first item to the end of the window that opened the alert), events counted late,
and how many alerts opened on a different window in the two orders.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from stream.detector import DetectorConfig
from stream.offline import replay

DAY = 86_400.0
TOPICS = [f"topic{i:02d}" for i in range(20)]
KINDS = ("sharp", "quiet", "slow", "busy", "topic", "stories", "syndicated")
MUST_NOT = ("syndicated",)  # shapes that must not alert
SOURCES = ("wire", "reuters", "bloomberg", "blog", "social", "pr")
CURVE = [(0.0, 11.0, 0.12), (11.0, 13.5, 0.35), (13.5, 20.0, 1.0), (20.0, 23.0, 0.35), (23.0, 24.0, 0.12)]


def segments(days: float):
    """(start, end, level) pieces of the day curve over `days`."""
    out = []
    for d in range(int(np.ceil(days))):
        for a, b, level in CURVE:
            lo, hi = d * DAY + a * 3600, min(d * DAY + b * 3600, days * DAY)
            if hi > lo:
                out.append((lo, hi, level))
    return out


def poisson_times(rng: np.random.Generator, lo: float, hi: float, rate: float) -> np.ndarray:
    return np.sort(rng.uniform(lo, hi, rng.poisson(rate * (hi - lo))))


def ticker_traffic(rng: np.random.Generator, name: str, rate: float, share: float, topics: list[str], days: float,
                   bursts: bool = True, flat: bool = False) -> list:
    """One ticker's ordinary traffic: the day curve (or a flat rate), plus ordinary news bursts."""
    times, shares = [], []
    for lo, hi, level in segments(days):
        t = poisson_times(rng, lo, hi, rate * (1.0 if flat else level))
        times.append(t)
        shares.append(np.full(len(t), share))
    if bursts:
        for _ in range(rng.poisson(days)):
            start = rng.uniform(0, days * DAY)
            length, boost = rng.uniform(600, 2400), rng.uniform(5, 15)
            level = next(lv for a, b, lv in segments(days) if a <= start < b)
            # the burst adds (boost - 1) x the ticker's volume at that hour, at its usual mix
            t = poisson_times(rng, start, min(start + length, days * DAY), rate * level * (boost - 1))
            times.append(t)
            shares.append(np.full(len(t), float(np.clip(share + rng.uniform(-0.05, 0.05), 0.02, 0.9))))
    ts, sh = np.concatenate(times), np.concatenate(shares)
    neg = rng.random(len(ts)) < sh
    top = rng.integers(0, len(topics), len(ts))
    return [(float(t), f"{name}-{i}", bool(g), topics[j], (name,)) for i, (t, g, j) in enumerate(zip(ts, neg, top))]


def level_at(t: float) -> float:
    hour = (t % DAY) / 3600
    return next(level for a, b, level in CURVE if a <= hour < b)


def plant(kind: str, idx: int, at: float, rng: np.random.Generator, days: float, tickers: list,
          events: list) -> tuple[list, str]:
    """The surge's items and the key that should alert; hosts get their own ordinary traffic."""
    if kind == "topic":  # topic01/02 carry the hosts' own traffic: not used for topic surges
        topic = TOPICS[int(rng.integers(3, len(TOPICS)))]
        mine = [name for name, topics in tickers if topic in topics]
        # as many extra negatives as the topic had per 2 minutes over the 10 minutes before (its
        # member tickers' ordinary bursts included): its negatives double
        usual = sum(1 for e in events if e[3] == topic and e[2] and at - 600 <= e[0] < at) / 5
        n = max(60, int(round(usual)))
        chosen = [mine[int(i)] for i in rng.choice(len(mine), min(20, len(mine)), replace=False)]
        evs = [(at + float(rng.uniform(0, 120)), f"surge{idx}-{j}", True, topic, (chosen[j % len(chosen)],))
               for j in range(n)]
        return evs, f"topic:{topic}"
    host = f"H{idx:03d}"
    if kind in ("stories", "syndicated"):
        evs = story_items(idx, at, host, rng, stories=15 if kind == "stories" else 1,
                          copies=(1, 4) if kind == "stories" else (20, 41))
        evs += ticker_traffic(rng, host, 1 / 300, 0.2, ["topic01", "topic02"], days, bursts=False, flat=True)
        return evs, f"ticker:{host}"
    rate, n, span = {"sharp": (1 / 300, 20, 60), "quiet": (1 / 300, 15, 110),
                     "slow": (1 / 300, 36, 480), "busy": (1 / 5, 60, 120)}[kind]
    offsets = span * np.sqrt(rng.random(n)) if kind == "slow" else rng.uniform(0, span, n)
    evs = [(at + float(o), f"surge{idx}-{j}", True, "topic01", (host,)) for j, o in enumerate(offsets)]
    # the host's own traffic is flat (no day curve), so that "quiet" and "busy" hold at any hour
    evs += ticker_traffic(rng, host, rate, 0.2, ["topic01", "topic02"], days, bursts=False, flat=True)
    return evs, f"ticker:{host}"


def story_items(idx: int, at: float, host: str, rng: np.random.Generator, stories: int,
                copies: tuple[int, int]) -> list:
    """`stories` negative stories within 2 minutes, each copied a number of times in [copies) across
    sources, with the story fields the worker gives them (story id, novel, copies so far)."""
    out = []
    for s in range(stories):
        times = np.sort(at + rng.uniform(0, 120, int(rng.integers(*copies))))
        sid = f"wire/surge{idx}-{s}-0"
        out += [(float(t), f"{SOURCES[int(rng.integers(len(SOURCES)))]}/surge{idx}-{s}-{c}", True, "topic01", (host,),
                 None, (sid, c == 0, c + 1)) for c, t in enumerate(times)]
    return out


def scenario(days: float, keys: int, surges_per_day: int, seed: int):
    rng = np.random.default_rng(seed)
    events, tickers = [], []
    for i in range(keys):
        name = f"T{i:04d}"
        rate = float(np.exp(rng.uniform(np.log(1 / 900), np.log(1 / 5))))
        topics = [TOPICS[int(j)] for j in rng.choice(len(TOPICS), 3, replace=False)]
        share = float(rng.uniform(0.10, 0.35))
        tickers.append((name, topics))
        events += ticker_traffic(rng, name, rate, share, topics, days)
    planted = []
    total = int(round(surges_per_day * days))
    for idx in range(total):
        kind = KINDS[idx % len(KINDS)]
        at = 1800 + (days * DAY - 3600) * (idx + float(rng.uniform(0.2, 0.8))) / total
        evs, expect = plant(kind, idx, at, rng, days, tickers, events)
        events += evs
        planted.append((kind, at, expect))
    return events, planted


def score(off, planted, days: float, nkeys: int) -> dict:
    opens = [d for d in off.decisions if d.action == "open"]
    per_kind: dict[str, list[int]] = {}
    delays, matched, by_kind = [], set(), {}
    for kind, at, expect in planted:
        hits = [d for d in opens if d.key == expect and at - 300 <= d.window_end <= at + 1200]
        matched |= {id(d) for d in hits}
        per_kind.setdefault(kind, []).append(len(hits))
        if hits and kind not in MUST_NOT:
            delays.append(min(d.window_end for d in hits) - at)
            by_kind.setdefault(kind, []).append(delays[-1])
    false = [d for d in opens if id(d) not in matched or any(
        d.key == expect and at - 300 <= d.window_end <= at + 1200 for kind, at, expect in planted if kind in MUST_NOT)]
    found = [h for kind, v in per_kind.items() if kind not in MUST_NOT for h in v if h]
    return {"recall": {k: sum(1 for h in v if h) / len(v) for k, v in per_kind.items()},
            "per_surge": statistics.mean(found) if found else 0.0, "false": false,
            "false_rate": len(false) / days / (nkeys / 1000), "delay": statistics.median(delays) if delays else None,
            "late": off.late, "escalations": sum(d.action == "escalate" for d in off.decisions),
            "delay_by_kind": {k: statistics.median(v) for k, v in by_kind.items()}}


def config(overrides: list[str]) -> DetectorConfig:
    """DetectorConfig with FIELD=VALUE overrides, each parsed as its default's type."""
    import dataclasses

    cfg = DetectorConfig()
    changes = {}
    for item in overrides:
        name, _, value = item.partition("=")
        default = getattr(cfg, name)  # AttributeError names an unknown field
        if isinstance(default, bool):
            changes[name] = value.lower() in ("1", "true", "yes", "on")
        else:
            changes[name] = type(default)(value)
    return dataclasses.replace(cfg, **changes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--surges", type=int, default=140, help="planted surges per simulated day (7 shapes in turn)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", choices=("order", "backlog"), help="run one of the two replays")
    ap.add_argument("--show-false", type=int, default=10, help="print this many false alerts")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a DetectorConfig field (e.g. topic_member_shares=false); repeatable")
    args = ap.parse_args()
    console = Console(width=200)
    t0 = time.perf_counter()
    events, planted = scenario(args.days, args.keys, args.surges, args.seed)
    nkeys = len({t for e in events for t in e[4]} | {e[3] for e in events})
    console.print(f"{len(events):,} events, {nkeys:,} keys (tickers and topics), {len(planted)} planted surges, "
                  f"{args.days:g} simulated day(s); generated in {time.perf_counter() - t0:.0f} s")
    cfg = config(args.set)
    table = Table(title=f"alert quality (DetectorConfig {' '.join(args.set) or 'defaults'}: {cfg.slice_s} s slices, {cfg.window_s} s window, "
                        f"p ≤ {cfg.p_threshold:g}); seed {args.seed}")
    for col in ("replay", *(k for k in KINDS if k not in MUST_NOT), "syndicated alerted", "alerts/surge",
                "false/day/1k keys", "false", "median delay", "late", "seconds"):
        table.add_column(col, justify="right")
    runs = (("event-time order", 1), ("backlog, 4 partitions", 4))
    opened = {}
    for label, parts in runs:
        if args.only and (args.only == "order") != (parts == 1):
            continue
        t1 = time.perf_counter()
        off = replay(events, cfg, partitions=parts, batch=256, seed=args.seed)
        took = time.perf_counter() - t1
        opened[parts] = {(d.key, d.alert_start) for d in off.decisions if d.action == "open"}
        r = score(off, planted, args.days, nkeys)
        rec = r["recall"]
        must_not = [h for (kind, _, _), h in zip(planted, _hits(off, planted)) if kind in MUST_NOT]
        table.add_row(label, *(f"{rec.get(k, 0):.2f}" for k in KINDS if k not in MUST_NOT),
                      f"{sum(1 for h in must_not if h)}/{len(must_not)}", f"{r['per_surge']:.2f}",
                      f"{r['false_rate']:.2f}", str(len(r["false"])),
                      f"{r['delay']:.0f} s" if r["delay"] is not None else "-", str(r["late"]), f"{took:.0f}")
        for d in r["false"][: args.show_false]:
            console.print(f"  false alert ({label}): {d.key} window ending {d.window_end / 3600:.2f} h: "
                          f"{d.negatives}/{d.n} negative, expected {d.expected} of {d.baseline_n} at share "
                          f"{d.baseline_rate}, p {d.p_value:.1e}")
        console.print(f"  median delay by type ({label}): "
                      + ", ".join(f"{k} {r['delay_by_kind'].get(k, float('nan')):.0f} s" for k in KINDS))
        missed = [(kind, round(at / 3600, 2), key) for (kind, at, key), h in zip(planted, _hits(off, planted))
                  if not h and kind not in MUST_NOT]
        if missed:
            console.print(f"  missed ({label}): {missed[:10]}")
    console.print(table)
    if len(opened) == 2:
        differ = opened[1] ^ opened[4]
        console.print(f"alerts (key, window opened on) that differ between event-time order and the backlog: {len(differ)}"
                      + (f" {sorted(differ)[:10]}" if differ else ""))


def _hits(off, planted) -> list[int]:
    opens = [d for d in off.decisions if d.action == "open"]
    return [sum(1 for d in opens if d.key == key and at - 300 <= d.window_end <= at + 1200) for _, at, key in planted]


if __name__ == "__main__":
    main()
