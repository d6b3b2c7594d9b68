"""Prometheus metrics of the API (names shared with dashboards/), and a pure ASGI middleware
that counts requests by route template and known method (not raw path or any method name a
client invents, so label cardinality stays bounded)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("finsent_api_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("finsent_api_request_seconds", "HTTP request latency (to the end of the body)", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SSE_CLIENTS = Gauge("finsent_api_sse_clients", "Open live alert streams (SSE and WebSocket)")
WEBHOOKS = Counter("finsent_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"])
for _outcome in ("delivered", "failed", "retry", "disabled"):
    WEBHOOKS.labels(_outcome)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
SERIES_CACHE = Counter("finsent_api_series_cache_total", "Series answers by where they came from: hit (cached), "
                       "shared (an identical request in flight), miss (read), off (cache not listening)", ["outcome"])
for _outcome in ("hit", "shared", "miss", "off"):
    SERIES_CACHE.labels(_outcome)
SERIES_CACHE_BYTES = Gauge("finsent_api_series_cache_bytes", "Bytes of cached series answers and rollup pieces")
SERIES_PIECES = Counter("finsent_api_series_pieces_total", "Rollup pieces a series answer was assembled from: hit "
                        "(in memory), shared (read by a request in flight), miss (read)", ["outcome"])
for _outcome in ("hit", "shared", "miss"):
    SERIES_PIECES.labels(_outcome)
SERIES_CACHE_LISTENING = Gauge("finsent_api_series_cache_listening",
                               "1 while the series cache receives rollup changes (0: every series read hits the "
                               "database)")
REPLICA_LAG = Gauge("finsent_api_replica_lag_seconds", "Seconds the read replica (FINSENT_API_READ_URL) is behind "
                    "the primary, sampled every few seconds; absent with no replica or when it cannot be asked",
                    ["replica"])
REPLICA_UP = Gauge("finsent_api_replica_up", "1 when the last lag sample of the read replica succeeded, 0 when it "
                   "failed (reads answer 503); absent with no replica", ["replica"])
CLIENT_CUTS = Counter("finsent_api_client_cuts_total", "Connections cut because the client was too slow: header "
                      "(request head not complete within FINSENT_API_HEADER_TIMEOUT_S), body (body not within "
                      "FINSENT_API_BODY_TIMEOUT_S), read (took no piece of its answer within "
                      "FINSENT_API_SEND_TIMEOUT_S)", ["phase"])
for _phase in ("header", "body", "read"):
    CLIENT_CUTS.labels(_phase)
MODEL_VERSION = Gauge("finsent_api_model_version", "1 for the model version the API scores with", ["version"])
MODEL_SWAPS = Counter("finsent_api_model_swaps_total", "Model hot swaps in the API, by outcome (swapped | failed)",
                      ["outcome"])


def count_model_swap(outcome: str, version: str) -> None:
    MODEL_SWAPS.labels(outcome).inc()
    if outcome == "swapped":
        MODEL_VERSION.clear()
        MODEL_VERSION.labels(version).set(1)


class MetricsMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            REQUESTS.labels(method, route, str(status[0])).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - start)
