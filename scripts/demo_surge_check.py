"""Does the demo's planted $ACME surge alert with a given model? Offline, over many seeds.

`make demo` (and tests/web/test_page.py) feed 60 s of simulated traffic with a time-based seed
and fail when the planted surge does not alert. Whether it does depends on how the model reads
the simulated texts, so check a new model here before it ships:

    .venv/bin/python scripts/demo_surge_check.py [--model DIR] [--seeds 200] [--size 120]

For each seed it builds the demo's feed, scores it with the model (int8 ONNX, as the worker)
and replays it through the demo's detector settings (finsent.demo.replay_offline: event-time
order, no Kafka, no Postgres). Prints how many seeds alerted on the surge ticker.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from finsent.demo import SURGE_SIZE, SURGE_TICKER, replay_offline
from models.runtime import DEFAULT_ARTIFACT, Scorer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--size", type=int, default=SURGE_SIZE, help="surge items (the demo's: %(default)s)")
    args = ap.parse_args()
    scorer = Scorer.from_artifact(args.model)
    start = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    read: dict = {}
    missed = []
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("seeds", total=args.seeds)
        for seed in range(args.seeds):
            decisions = replay_offline(scorer, [(seed, start)], args.size, read=read)
            if not any(d.key == f"ticker:{SURGE_TICKER}" and d.action == "open" for d in decisions):
                missed.append(seed)
            progress.advance(task)
    alerted = args.seeds - len(missed)
    print(f"model {scorer.version}, surge of {args.size} on ${SURGE_TICKER}: alerted in {alerted}/{args.seeds} seeds"
          + (f"; missed seeds {missed[:20]}" if missed else ""))
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
