"""Prometheus metrics of the stream worker (served at /metrics by the worker's web server)."""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("finsent_consumed_total", "Messages read from input topics", ["topic"])
SCORED = Counter("finsent_scored_total", "Events scored and written to Postgres")
DEADLETTERED = Counter("finsent_deadlettered_total", "Messages sent to the dead-letter topic", ["reason"])
DUPLICATES = Counter("finsent_duplicates_total", "Messages dropped as recently seen ids")
BATCH_SIZE = Histogram("finsent_batch_size", "Events per scoring batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
MODEL_LATENCY = Histogram("finsent_model_latency_seconds", "Runtime call per batch",
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
WRITE_LATENCY = Histogram("finsent_write_latency_seconds", "Postgres write per batch (incl. retries)",
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
DB_RETRIES = Counter("finsent_db_retries_total", "Postgres writes retried after a connection failure")
DB_UP = Gauge("finsent_db_up", "1 when the last Postgres write succeeded")
ALERTS = Counter("finsent_alerts_total", "Alerts opened or resolved", ["action"])
LAG = Gauge("finsent_consumer_lag", "High watermark minus committed offset", ["topic", "partition"])


def reason_kind(reason: str) -> str:
    """A low-cardinality label for a dead-letter reason."""
    head = reason.split(":", 1)[0].split(";", 1)[0].strip()
    return head if len(head) <= 40 else head[:40]
