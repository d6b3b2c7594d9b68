"""Does the demo alert on its planted $ACME surge, and on nothing else, with a given model?
Offline, over many seeds.

`make demo` (and tests/web/test_page.py) feed 60 s of simulated traffic with a time-based seed
(printed) and fail when the planted surge does not alert. Whether it does, and whether anything
else alerts, depends on how the model reads the simulated texts, so check a new model here
before it ships:

    .venv/bin/python scripts/demo_surge_check.py [--model DIR] [--seeds 200] [--size 120] [--raw-feed]

For each seed it builds the demo's feed (finsent.demo.demo_feed), scores it with
the model (int8 ONNX, as the worker) and replays it through the demo's detector settings
(finsent.demo.replay_offline: event-time order, no Kafka, no Postgres). Prints in how many
seeds the surge ticker alerted and every other alert that opened; exits 1 on a miss or on any
other alert.
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from finsent.demo import LEGAL_SHARE, SURGE_SIZE, SURGE_TICKER, replay_offline
from models.runtime import DEFAULT_ARTIFACT, Scorer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=SURGE_SIZE, help="surge items (the demo's: %(default)s)")
    ap.add_argument("--raw-feed", action="store_true",
                    help="the simulator's feed as it is, without the demo's legal news that is not bad news")
    args = ap.parse_args()
    scorer = Scorer.from_artifact(args.model)
    start = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    read: dict = {}
    missed, others, other_seeds = [], Counter(), set()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("seeds", total=args.seeds)
        for seed in seeds:
            decisions = replay_offline(scorer, [(seed, start)], args.size, read=read,
                                       legal_share=0.0 if args.raw_feed else LEGAL_SHARE)
            opened = [d.key for d in decisions if d.action == "open"]
            if f"ticker:{SURGE_TICKER}" not in opened:
                missed.append(seed)
            for key in opened:
                if key != f"ticker:{SURGE_TICKER}":
                    others[key] += 1
                    other_seeds.add(seed)
            progress.advance(task)
    alerted = args.seeds - len(missed)
    print(f"model {scorer.version}, surge of {args.size} on ${SURGE_TICKER}"
          f"{' (raw feed)' if args.raw_feed else ''}: alerted in {alerted}/{args.seeds} seeds"
          + (f"; missed seeds {missed[:20]}" if missed else ""))
    print(f"other alerts: {sum(others.values())} in {len(other_seeds)} of {args.seeds} seeds"
          + (f" ({', '.join(f'{k} x{c}' for k, c in others.most_common())}; seeds {sorted(other_seeds)[:20]})"
             if others else ""))
    return 0 if not missed and not others else 1


if __name__ == "__main__":
    raise SystemExit(main())
