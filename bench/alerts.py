"""Alert quality of the spike detector on simulated days (a benchmark, not a test).

    python bench/alerts.py --days 1 --keys 1000 --seed 7

Traffic (seeded): `keys` tickers with rates from one mention per 10 min to one per 5 s, a
market-hours day curve, per-ticker negative shares of 0.10-0.35, and ordinary news bursts
(5-15x volume for 20 min with the ticker's usual mix: busy, not negative). Planted surges, five
shapes: sharp (20 negatives in 60 s on a quiet ticker), quiet (15 in 110 s), slow build-up (36
over 8 minutes, rising), busy (60 in 2 min on a ticker with a mention every 5 s), topic (45
across 15 tickers on one topic in 2 min). Replayed through the detector the way the worker
drives it (stream.offline): in event-time order, and as a backlog on 4 partitions consumed in
random order. Prints recall by surge type, alerts per surge, false alerts per day per 1,000
keys, and the detection delay (event time from the surge's first item to the alert).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

from rich.console import Console
from rich.table import Table

from stream.detector import DetectorConfig
from stream.offline import replay

DAY = 86_400.0
TOPICS = [f"topic{i:02d}" for i in range(20)]


def day_curve(t: float) -> float:
    hour = (t % DAY) / 3600
    return 1.0 if 13.5 <= hour <= 20 else 0.35 if 11 <= hour <= 23 else 0.12


def background(days: float, keys: int, rng: random.Random) -> list:
    out = []
    for i in range(keys):
        name, rate = f"T{i:04d}", math.exp(rng.uniform(math.log(1 / 600), math.log(1 / 5)))
        share, topics = rng.uniform(0.10, 0.35), rng.sample(TOPICS, 3)
        bursts = [rng.uniform(0, days * DAY) for _ in range(rng.randint(0, 2))]
        t, peak = 0.0, rate * 15
        while (t := t + rng.expovariate(peak)) < days * DAY:
            boost = 10 if any(b <= t < b + 1200 for b in bursts) else 1
            if rng.random() < day_curve(t) * rate * boost / peak:
                out.append((t, f"{name}-{len(out)}", rng.random() < share, rng.choice(topics), (name,)))
    return out


def plant(kind: str, at: float, rng: random.Random, idx: int) -> tuple[list, set[str]]:
    def items(ticker, n, span, topic="topic00", times=None):
        times = times or [at + rng.uniform(0, span) for _ in range(n)]
        return [(ts, f"surge{idx}-{j}", True, topic, (ticker,)) for j, ts in enumerate(times)]
    if kind == "sharp":
        return items(f"Q{idx}", 20, 60), {f"ticker:Q{idx}"}
    if kind == "quiet":
        return items(f"Q{idx}", 15, 110), {f"ticker:Q{idx}"}
    if kind == "slow":
        return items(f"Q{idx}", 36, 480, times=[at + 480 * math.sqrt(rng.random()) for _ in range(36)]), {f"ticker:Q{idx}"}
    if kind == "busy":
        return items(f"B{idx}", 60, 120), {f"ticker:B{idx}"}
    evs = [(at + rng.uniform(0, 120), f"surge{idx}-{j}", True, "topic19", (f"W{idx}-{j % 15}",)) for j in range(45)]
    return evs, {"topic:topic19"}


def quiet_and_busy_hosts(idx: int, days: float, rng: random.Random) -> list:
    """The planted tickers' own ordinary traffic: Q* quiet (1 per 5 min), B* busy (1 per 5 s)."""
    out = []
    for name, rate in ((f"Q{idx}", 1 / 300), (f"B{idx}", 1 / 5)):
        t = 0.0
        while (t := t + rng.expovariate(rate)) < days * DAY:
            out.append((t, f"{name}-bg-{len(out)}", rng.random() < 0.2, "topic01", (name,)))
    return out


def scenario(days: float, keys: int, seed: int):
    rng = random.Random(seed)
    events, planted = background(days, keys, rng), []
    kinds = ["sharp", "quiet", "slow", "busy", "topic"]
    for idx in range(int(10 * days)):
        kind = kinds[idx % len(kinds)]
        at = 3600 + (days * DAY - 7200) * (idx + 0.5) / int(10 * days)
        evs, expect = plant(kind, at, rng, idx)
        events += evs + (quiet_and_busy_hosts(idx, days, rng) if kind != "topic" else [])
        planted.append((kind, at, expect))
    return events, planted


def score(off, planted, days: float, keys: int) -> dict:
    opens = [d for d in off.decisions if d.action == "open"]
    per_kind, delays, matched = {}, [], set()
    for kind, at, expect in planted:
        hits = [d for d in opens if d.key in expect and at - 300 <= d.window_end <= at + 1200]
        matched |= {id(d) for d in hits}
        per_kind.setdefault(kind, []).append(len(hits))
        if hits:
            delays.append(min(d.window_end for d in hits) - at)
    false = [d for d in opens if id(d) not in matched]
    return {"recall": {k: sum(1 for h in v if h) / len(v) for k, v in per_kind.items()},
            "per_surge": statistics.mean(h for v in per_kind.values() for h in v if h) if matched else 0.0,
            "false_per_day_1000": len(false) / days / (keys / 1000), "delay": statistics.median(delays) if delays else None,
            "late": off.late, "false": false}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    console = Console()
    t0 = time.perf_counter()
    events, planted = scenario(args.days, args.keys, args.seed)
    console.print(f"{len(events):,} events, {args.keys:,} background tickers, {len(planted)} planted surges, "
                  f"{args.days:g} simulated day(s); generated in {time.perf_counter() - t0:.0f} s")
    table = Table(title="alert quality (DetectorConfig defaults: 10 s slices, 120 s window, p ≤ 1e-6)")
    for col in ("order", "sharp", "quiet", "slow", "busy", "topic", "alerts/surge", "false/day/1k keys",
                "median delay", "late"):
        table.add_column(col, justify="right")
    for label, parts in (("event time", 1), ("backlog, 4 partitions", 4)):
        r = score(replay(events, DetectorConfig(), partitions=parts, batch=256, seed=args.seed), planted,
                  args.days, args.keys)
        rec = r["recall"]
        table.add_row(label, *(f"{rec.get(k, 0):.2f}" for k in ("sharp", "quiet", "slow", "busy", "topic")),
                      f"{r['per_surge']:.2f}", f"{r['false_per_day_1000']:.2f}",
                      f"{r['delay']:.0f} s" if r["delay"] is not None else "-", str(r["late"]))
        for d in r["false"][:5]:
            console.print(f"  false alert ({label}): {d.key} at {d.window_end:.0f} s: {d.negatives}/{d.n}, "
                          f"expected {d.expected}, p {d.p_value:.1e}")
    console.print(table)


if __name__ == "__main__":
    main()
