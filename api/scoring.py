"""Ad-hoc scoring: concurrent requests are gathered into one model call (up to MAX_BATCH texts,
waiting at most MAX_WAIT_S for company), run in a thread so the event loop never blocks.
The model loads on the first request (about a second), never at import or for /ready."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

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
        self.scorer = None

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
            if self.scorer is None:
                self.scorer = await asyncio.to_thread(self._load)
            return await asyncio.to_thread(self.scorer.explain, text)
        except Exception as exc:  # noqa: BLE001 - the request gets a 503 with the reason
            log.error("explain.failed", error=str(exc))
            raise ModelUnavailable(str(exc)) from exc

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _load(self):
        from models.runtime import Scorer

        s = self.settings
        return Scorer.from_artifact(s.model_dir, s.backend, s.precision, device=s.device, max_batch=MAX_BATCH)

    async def _run(self) -> None:
        while True:
            jobs = await self._gather()
            try:
                if self.scorer is None:
                    self.scorer = await asyncio.to_thread(self._load)
                preds = await asyncio.to_thread(self.scorer.predict, [t for j in jobs for t in j.texts])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the loop lives on
                log.error("score.failed", error=str(exc))
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(ModelUnavailable(str(exc)))
                continue
            for j in jobs:
                if not j.future.done():
                    j.future.set_result((self.scorer.version, preds[:len(j.texts)]))
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
