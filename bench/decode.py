"""Input decoding cost (not a test): is pydantic worth replacing on the hot path?

    python bench/decode.py [--n 50000]

Times, per message, on the simulated input mix (news with tickers, social posts with cashtags):
the worker's `decode` (orjson + pydantic + hand checks), the same plus masking, and `orjson.loads`
alone — the floor any faster validator (msgspec, hand checks) could reach.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.masking import Masker  # noqa: E402
from stream.records import decode  # noqa: E402
from stream.simulate import feed  # noqa: E402


def per_msg_us(fn, raws) -> float:
    fn(raws[0])
    t0 = time.perf_counter()
    for r in raws:
        fn(r)
    return (time.perf_counter() - t0) / len(raws) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    n = ap.parse_args().n
    now = time.time()
    raws = [orjson.dumps(e) for e in feed(n, 7, start=datetime.now(timezone.utc), spacing_s=0.001)]
    mask = Masker(("email", "phone"))

    def masked(r):
        e = decode(r, 20_000, now)
        return e.model_copy(update={"text": mask(e.text), "title": e.title and mask(e.title)})

    rows = [("orjson.loads only (floor of any faster validator)", per_msg_us(orjson.loads, raws)),
            ("decode: orjson + pydantic + checks (the worker's)", per_msg_us(lambda r: decode(r, 20_000, now), raws)),
            ("decode + masking (email, phone)", per_msg_us(masked, raws)),
            ("decode + all_tickers (cashtags)", per_msg_us(lambda r: decode(r, 20_000, now).all_tickers(), raws))]
    t = Table(title=f"decoding {n:,} simulated input messages, one core")
    t.add_column("path")
    t.add_column("µs / message", justify="right")
    t.add_column("share of one core at 5,000 msgs/s", justify="right")
    for name, us in rows:
        t.add_row(name, f"{us:.1f}", f"{us * 5000 / 1e6:.1%}")
    Console().print(t)


if __name__ == "__main__":
    main()
