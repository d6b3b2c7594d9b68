"""A new model without a restart: the worker watches `FINSENT_MODEL_DIR/current`.

Point `current` (a symlink, or a text file holding a directory name) at another artifact
directory and within `FINSENT_MODEL_POLL_S` the worker loads it in a thread, checks it on known
texts, and swaps it in between two batches: no message is lost, none is scored twice, and every
row carries the version that scored it (`model_version`). A model that fails to load or to pass
the check is not swapped in: the worker goes on with the one it has, logs the error, counts it
in `finsent_model_swaps_total{outcome="failed"}` and shows it in /health (`model.swap_error`),
and tries again when `current` changes. (At start the same failure stops the worker, exit 3.)
The watching itself is models.hotswap.ModelSwap, shared with the API; this module adds the worker's metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.hotswap import ModelSwap
from models.runtime import Scorer
from stream import metrics


def worker_swap(model_dir: Path, holder, load: Callable[[Path], Scorer]) -> ModelSwap:
    metrics.MODEL_VERSION.labels(holder.scorer.version).set(1)
    return ModelSwap(model_dir, holder, load, on_change=_count)


def _count(outcome: str, version: str) -> None:
    metrics.MODEL_SWAPS.labels(outcome).inc()
    if outcome == "swapped":
        metrics.MODEL_VERSION.clear()
        metrics.MODEL_VERSION.labels(version).set(1)
