"""The worker's web pages: /metrics (Prometheus) and /health (503 with every problem named)."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.worker import Worker


def skipped(w: Worker) -> str:
    """Input records not delivered while later ones were (stream.commits): not stored until the next seek."""
    holds = getattr(w.app.consumer, "input_offsets", None)
    return "; ".join(f"{tp.topic}/{tp.partition}: records from offset {o} not delivered; not committed past them, "
                     f"re-read at the next rebalance or restart" for tp, o in (holds.holds() if holds else {}).items())


def problems(w: Worker) -> dict[str, str]:
    """Everything that stops storing, scoring or alerting, by where it is ("" = fine)."""
    return {k: v for k, v in (("postgres", w.sink.last_error), ("model", w.processor.health.model_error),
                              ("fetch", w.guard.problem()), ("skipped", skipped(w)),
                              ("stalled", w.stall_watch.problem()),
                              ("watermark", w.detection.problem()), ("history", w.upkeep.problem()),
                              ("consumer", w.unassigned_problem(time.monotonic())),
                              ("recovery", w.recovery_problem(time.monotonic()))) if v}


def register(w: Worker) -> None:
    app = w.app

    @app.page("/metrics")
    async def metrics_page(self, request):
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split("; charset")[0])

    @app.page("/health")
    async def health(self, request):
        found = problems(w)
        body = {"status": "degraded" if found else "ok", "problems": found,
                "assigned_partitions": len(app.consumer.assignment()), "late_events": w.detection.late,
                "watermarks": w.detection.watermarks(), "model": w.swap.state()}
        return self.json(body, status=503 if found else 200)
