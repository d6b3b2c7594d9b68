"""The worker's hourly upkeep of what it stores: daily partitions ahead, raw history past retention
(archived, verified, dropped: core/history.py), the stories index past its horizon
(core/stories.py). Each part runs on its own connection and transaction; a failure is logged,
counted, shown on /health (`problems.history`) until a later run succeeds, and retried at the
next run. Rows keep being stored meanwhile: upkeep never holds a batch. Days past retention with
no archive directory set (and FINSENT_RETENTION_DROP_UNARCHIVED off) are kept: nothing has
failed, so /health stays 200; `finsent_history_behind` is 1 and each run logs a warning."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Gauge

from core import logs
from core.history import HistoryError, NoArchive, Retention

log = logs.get("finsent.worker")

UPKEEP_ERRORS = Counter("finsent_upkeep_errors_total", "Upkeep runs that failed, by part", ["part"])
HISTORY_DAYS = Counter("finsent_history_days_total", "Raw days archived or dropped by upkeep", ["action"])
HISTORY_BEHIND = Gauge("finsent_history_behind", "1 while a day past raw retention cannot be archived or dropped "
                       "(see /health problems.history)")
MAX_DAYS_PER_RUN = 24  # a worker that was off for weeks catches up a day at a time, a bounded run each hour


class Upkeep:
    def __init__(self, sink, settings, interval_s: float = 3600.0):
        self.sink, self.settings, self.interval_s = sink, settings, interval_s
        self.policy = Retention.from_settings(settings)
        self.history_error: str | None = None

    def problem(self) -> str:
        return self.history_error or ""

    async def run_forever(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    async def run_once(self) -> None:
        await self._part("partitions", self._partitions)
        await self._part("history", self._history)
        await self._part("stories", self._stories)

    async def _part(self, name: str, work) -> None:
        t = time.monotonic()
        try:
            await work()
            if name == "history":
                self.history_error = None
                HISTORY_BEHIND.set(0)
        except NoArchive as exc:  # kept, not failed: a warning and the metric, no /health problem
            self.history_error = None
            HISTORY_BEHIND.set(1)
            log.warning("raw history past retention is kept: no archive directory", reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - counted, shown, retried at the next run
            UPKEEP_ERRORS.labels(name).inc()
            reason = str(exc) if isinstance(exc, HistoryError) else repr(exc)[:300]
            log.error("upkeep failed; retried at the next run", part=name, error=reason,
                      seconds=round(time.monotonic() - t, 1))
            if name == "history":
                self.history_error = f"history upkeep failed: {reason}"
                HISTORY_BEHIND.set(1)

    async def _partitions(self) -> None:
        created = await self.sink.partition_upkeep()
        if created:
            log.info("partitions created", days=[d.isoformat() for d in created])

    async def _history(self) -> None:
        from core import history

        async with await self.sink.acquire() as conn:
            for _ in range(MAX_DAYS_PER_RUN):
                done = await history.upkeep(conn, self.policy)
                for line in done:
                    log.info("history upkeep", step=line)
                    for action in ("archived", "dropped"):
                        if f" {action}:" in line:
                            HISTORY_DAYS.labels(action).inc()
                if not any(" dropped:" in line for line in done):
                    break

    async def _stories(self) -> None:
        from core import stories

        async with await self.sink.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '5s'")
                truncated = await stories.upkeep(conn)
            if truncated:
                log.info("stories index slots past the horizon truncated", slots=truncated)
