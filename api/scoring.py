"""Ad-hoc scoring: concurrent requests are gathered into one model call (up to MAX_BATCH texts,
waiting at most MAX_WAIT_S for company), run in a thread so the event loop never blocks.
The model loads on the first request (about a second), never at import or for /ready. After
that, every FINSENT_MODEL_POLL_S at most (checked when requests come), the API follows
FINSENT_MODEL_DIR/current as the worker does (models.hotswap): a new artifact is loaded and
checked in a thread while requests go on with the model in use, and answers carry the version
that scored them; a broken one is refused and shown in /health (`model.swap_error`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from api import metrics
from api.heap import freeze_long_lived
from core.logs import get
from core.settings import Settings

MAX_BATCH = 64
MAX_WAIT_S = 0.005
log = get("api.scoring")


class ModelUnavailable(RuntimeError):
    """The model could not be loaded; the request gets a 503."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ScoringBatcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._poll: asyncio.Task | None = None
        self._next_poll = 0.0
        self.scorer = None
        self.swap = None  # models.hotswap.ModelSwap, once a model is loaded

    async def predict(self, texts: list[str]) -> tuple[str, list]:
        """(model version, predictions in input order)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="scoring-batcher")
        job = _Job(texts)
        await self.queue.put(job)
        return await job.future

    async def explain(self, text: str):
        """Per-word attributions for one text (occlusion: one model call of n_words + 1 texts)."""
        try:
            await self._ensure_model()
            return await asyncio.to_thread(self.scorer.explain, text)
        except Exception as exc:  # noqa: BLE001 - the request gets a 503 with the reason
            log.error("explain.failed", error=str(exc))
            raise ModelUnavailable(str(exc)) from exc

    def state(self) -> dict | None:
        """The model in use (version, directory, the last refused swap), or None before the first load."""
        return self.swap.state() if self.swap else None

    async def stop(self) -> None:
        for task in (self._task, self._poll):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _load(self, directory: Path | None = None):
        from models.runtime import Scorer

        s = self.settings
        return Scorer.from_artifact(directory or s.model_dir, s.backend, s.precision, device=s.device,
                                    max_batch=MAX_BATCH).check()

    async def _ensure_model(self) -> None:
        """Load the model on first use; later, start a look at `current` when one is due (in the
        background: the model in use answers meanwhile, the next batch takes the new one)."""
        if self.scorer is None:
            from models.hotswap import ModelSwap

            self.scorer = await asyncio.to_thread(self._load)
            self.swap = ModelSwap(self.settings.model_dir, self, self._load, on_change=metrics.count_model_swap)
            freeze_long_lived()  # the model lives as long as the process (api/heap.py; a swap's does not)
            metrics.MODEL_VERSION.labels(self.scorer.version).set(1)
            self._next_poll = time.monotonic() + self.settings.model_poll_s
        elif time.monotonic() >= self._next_poll and (self._poll is None or self._poll.done()):
            self._next_poll = time.monotonic() + self.settings.model_poll_s
            self._poll = asyncio.create_task(self.swap.poll(), name="model-swap")

    async def _run(self) -> None:
        while True:
            jobs = await self._gather()
            try:
                await self._ensure_model()
                scorer = self.scorer  # the version that answers is the one that scored
                preds = await asyncio.to_thread(scorer.predict, [t for j in jobs for t in j.texts])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the loop lives on
                log.error("score.failed", error=str(exc))
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(ModelUnavailable(str(exc)))
                continue
            for j in jobs:
                if not j.future.done():
                    j.future.set_result((scorer.version, preds[:len(j.texts)]))
                preds = preds[len(j.texts):]

    async def _gather(self) -> list[_Job]:
        jobs = [await self.queue.get()]
        size, deadline = len(jobs[0].texts), asyncio.get_running_loop().time() + MAX_WAIT_S
        while size < MAX_BATCH:
            try:
                job = await asyncio.wait_for(self.queue.get(), max(deadline - asyncio.get_running_loop().time(), 0))
            except asyncio.TimeoutError:
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs
