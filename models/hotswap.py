"""A new model without a restart: follow `MODEL_DIR/current` (models.runtime.resolve_artifact).

`ModelSwap.poll()` looks at where `current` points; when it names another artifact directory it
loads and checks that one in a thread (`load(directory)`, blocking) and replaces `holder.scorer`,
so the caller's next batch uses it. A model that fails to load or to pass its check is refused:
the one in use stays, the reason is kept (`state()["swap_error"]`) and logged, and the same
target is not tried again until `current` moves. The worker (stream/hotswap.py) and the API
(api/scoring.py) each use one, with their own metrics through `on_change`.

Room: serving (loads a built artifact and scores; torch only for the reference backend). See models/README.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from core import logs
from models.runtime import resolve_artifact

log = logs.get("finsent.model")


class ModelSwap:
    def __init__(self, model_dir: Path, holder, load: Callable[[Path], object],
                 on_change: Callable[[str, str], None] | None = None):
        """`holder.scorer`: the scorer in use (anything with `.version`); `on_change(outcome,
        version)` is called with ("swapped", new version) or ("failed", version still in use)."""
        self.model_dir, self.holder, self.load = Path(model_dir), holder, load
        self.on_change = on_change or (lambda outcome, version: None)
        self.active = self._target()
        self.failed: Path | None = None
        self.error = ""

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
            self.on_change("failed", old)
            log.error("new model refused; going on with the one in use", version=old, error=self.error)
            return False
        self.holder.scorer = scorer  # between two batches: the event loop runs one thing at a time
        self.active, self.failed, self.error = target, None, ""
        self.on_change("swapped", scorer.version)
        log.info("model swapped", previous=old, version=scorer.version, dir=str(target))
        return True
