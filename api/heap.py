"""The API's long-lived objects out of the garbage collector's full passes.

After start-up the process holds ~145,000 container objects that live as long as it does
(FastAPI's routes and pydantic's schemas, the modules, later the symbol directory and the
model's tokenizer). CPython's full (generation 2) collection walks all of them: 55-60 ms each,
several times a minute under load, during which no request is served. With 16 clients at
450 req/s on 2 cores that pause was the series p99 (93 ms against a 43 ms p99 without it,
`bench/api.py --only "50 tickers" --sliding 24`). `gc.freeze()` moves what exists into the
permanent generation, which collections skip (0.6 ms a full pass after it); objects made later
are collected as before. Called once the app has started and once after each lazy load (the
linker, the model); the lifespan's end undoes it (tests start many apps in one process).
"""

from __future__ import annotations

import gc

from prometheus_client import Gauge

FROZEN = Gauge("finsent_api_gc_frozen_objects", "Objects moved out of the collector's full passes (gc.freeze)")


def freeze_long_lived() -> None:
    """Everything alive now is long-lived: leave it out of future collections."""
    gc.freeze()
    FROZEN.set(gc.get_freeze_count())


def unfreeze() -> None:
    gc.unfreeze()
    FROZEN.set(0)
