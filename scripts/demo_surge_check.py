"""Does the demo's planted $ACME surge alert with a given model? Offline, over many seeds.

`make demo` (and tests/web/test_page.py) feed 60 s of simulated traffic with a time-based seed
and fail when the planted surge does not alert. Whether it does depends on how the model reads
the simulated texts, so check a new model here before it ships:

    .venv/bin/python scripts/demo_surge_check.py [--model DIR] [--seeds 200] [--size 120]

It builds the demo's feed per seed, scores it with the model (int8 ONNX, as the worker), and
replays the demo's detector settings (finsent.demo.DEMO_DETECTOR) in event-time order with
stream.offline — no Kafka, no Postgres. Prints how many seeds alerted on the surge ticker.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from finsent.demo import DEMO_DETECTOR, SURGE_SIZE, SURGE_TICKER
from models.runtime import DEFAULT_ARTIFACT, Scorer
from stream.detector import DetectorConfig
from stream.offline import replay
from stream.records import NewsEvent
from stream.simulate import Surge, feed

SECONDS, RATE = 60, 60  # the demo's defaults


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--size", type=int, default=SURGE_SIZE, help="surge items (the demo's: %(default)s)")
    args = ap.parse_args()
    scorer = Scorer.from_artifact(args.model)
    cfg = DetectorConfig(slice_s=DEMO_DETECTOR["slice_s"], window_s=DEMO_DETECTOR["window_s"],
                         warmup_s=DEMO_DETECTOR["detector_warmup_s"], lateness_s=DEMO_DETECTOR["lateness_s"])
    n = SECONDS * RATE
    start = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    read: dict[str, tuple[bool, str]] = {}
    missed = []
    console = Console(stderr=True)
    with Progress(console=console) as progress:
        task = progress.add_task("seeds", total=args.seeds)
        for seed in range(args.seeds):
            events = list(feed(n, seed=seed, surge=Surge(SURGE_TICKER, int(n * 0.7), args.size), start=start,
                               spacing_s=1 / RATE, prefix="demo"))
            new = list({e["text"] for e in events} - read.keys())
            for text, p in zip(new, scorer.predict(new)):
                read[text] = (p.sentiment == "negative", p.topic)
            tuples = []
            for e in events:
                ev = NewsEvent(**e)
                tuples.append((ev.published_at.timestamp(), ev.id, *read[ev.text], ev.all_tickers()))
            decisions = replay(tuples, cfg, partitions=1).decisions
            if not any(d.key == f"ticker:{SURGE_TICKER}" and d.action == "open" for d in decisions):
                missed.append(seed)
            progress.advance(task)
    alerted = args.seeds - len(missed)
    print(f"model {scorer.version}, surge of {args.size} on ${SURGE_TICKER}: alerted in {alerted}/{args.seeds} seeds"
          + (f"; missed seeds {missed[:20]}" if missed else ""))
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
