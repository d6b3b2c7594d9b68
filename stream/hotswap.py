"""A new model without a restart: the worker watches `FINSENT_MODEL_DIR/current`.

Point `current` (a symlink, or a text file holding a directory name) at another artifact
directory and within `FINSENT_MODEL_POLL_S` the worker loads it in a thread, checks it on known
texts, and swaps it in between two batches: no message is lost, none is scored twice, and every
row carries the version that scored it (`model_version`). A model that fails to load or to pass
the check is not swapped in: the worker goes on with the one it has, logs the error, counts it
in `finsent_model_swaps_total{outcome="failed"}` and shows it in /health (`model.swap_error`),
and tries again when `current` changes. (At start the same failure stops the worker, exit 3.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from core import logs
from models.runtime import Scorer, resolve_artifact
from stream import metrics

log = logs.get("finsent.worker")


class ModelSwap:
    def __init__(self, model_dir: Path, holder, load: Callable[[Path], Scorer]):
        """`holder.scorer` is the scorer in use (the BatchProcessor); `load(directory)` loads and
        checks one (blocking: run in a thread)."""
        self.model_dir, self.holder, self.load = Path(model_dir), holder, load
        self.active = self._target()
        self.failed: Path | None = None
        self.error = ""
        metrics.MODEL_VERSION.labels(holder.scorer.version).set(1)

    def _target(self) -> Path | None:
        try:
            return resolve_artifact(self.model_dir).resolve()
        except OSError:
            return None

    def state(self) -> dict:
        return {"version": self.holder.scorer.version, "dir": str(self.active), "swap_error": self.error or None}

    async def poll(self) -> bool:
        """Swap if `current` names another directory; True when a new model went in."""
        target = self._target()
        if target is None or target == self.active or target == self.failed:
            return False
        old = self.holder.scorer.version
        try:
            scorer = await asyncio.to_thread(self.load, target)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the model in use, with the reason
            self.failed, self.error = target, f"{target}: {type(exc).__name__}: {exc}"[:500]
            metrics.MODEL_SWAPS.labels("failed").inc()
            log.error("new model refused; going on with the one in use", version=old, error=self.error)
            return False
        self.holder.scorer = scorer  # between two batches: the event loop runs one thing at a time
        self.active, self.failed, self.error = target, None, ""
        metrics.MODEL_SWAPS.labels("swapped").inc()
        metrics.MODEL_VERSION.clear()
        metrics.MODEL_VERSION.labels(scorer.version).set(1)
        log.info("model swapped", previous=old, version=scorer.version, dir=str(target))
        return True
