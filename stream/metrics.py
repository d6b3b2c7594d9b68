"""Prometheus metrics of the stream worker (served at /metrics by the worker's web server).
The dashboards (dashboards/) and their tests read these names: rename with care."""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("finsent_consumed_total", "Messages read from input topics", ["topic"])
SCORED = Counter("finsent_scored_total", "Events scored and written to Postgres (new rows)")
DEADLETTERED = Counter("finsent_deadlettered_total", "Messages sent to the dead-letter topic", ["reason"])
DUPLICATES = Counter("finsent_duplicates_total", "Scored events already in Postgres (redelivery absorbed)")
RETIMED = Counter("finsent_duplicates_retimed_total", "Of the duplicates, items re-sent with another published_at "
                  "(the same source and id stored first under another time, FINSENT_DEDUPE_WINDOW_H): left out")
ARCHIVED = Counter("finsent_duplicates_archived_total", "Of the duplicates, items of a day already archived and dropped "
                   "that its archive holds (a replay of old events): left out, not counted again")
STORY_KEYS = Counter("finsent_story_keys_total", "Story band keys a batch looked up, by where from: the worker's key "
                     "cache (held by a live story) or a probe of the shared index", ["via"])
BATCH_SIZE = Histogram("finsent_batch_size", "Events per scoring batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
MODEL_LATENCY = Histogram("finsent_model_latency_seconds", "Runtime call per batch",
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
WRITE_LATENCY = Histogram("finsent_write_latency_seconds", "Postgres write per batch (incl. retries)",
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
E2E_LATENCY = Histogram("finsent_e2e_latency_seconds", "Kafka append time to committed row",
                        buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300))
DB_RETRIES = Counter("finsent_db_retries_total", "Postgres writes retried after a failure", ["kind"])
DB_UP = Gauge("finsent_db_up", "1 when the last Postgres write succeeded")
HALTED = Gauge("finsent_halted", "1 while the worker holds a batch it cannot store (see /health)")
BATCH_FAILURES = Counter("finsent_batch_failures_total", "Batch attempts that failed, by stage", ["stage"])
ALERTS = Counter("finsent_alerts_total", "Alert events written", ["action"])  # opened | escalated | resolved
LATE = Counter("finsent_late_events_total", "Events behind the watermark beyond the allowed lateness",
               ["key_type"])
WATERMARK_LAG = Gauge("finsent_watermark_lag_seconds", "Wall clock minus the detector's event-time watermark")
WATERMARK_STALLED = Gauge("finsent_watermark_stalled", "Scored partitions whose event-time watermark has been held back "
                          "longer than FINSENT_WATERMARK_STALL_S (no alert decided there)")
KEYS_EXPIRED = Counter("finsent_detector_keys_expired_total", "Detector keys deleted after FINSENT_DETECTOR_KEY_TTL_S quiet")
KEYS_EVICTED = Counter("finsent_detector_keys_evicted_total", "Quiet detector keys forgotten early because the "
                       "worker held more than FINSENT_DETECTOR_MAX_KEYS")
KEYS = Gauge("finsent_detector_keys", "Detector keys held by this worker (its table, standbys included)")
MODEL_VERSION = Gauge("finsent_model_version", "1 for the model version the worker scores with", ["version"])
MODEL_SWAPS = Counter("finsent_model_swaps_total", "Model hot swaps, by outcome (swapped | failed)", ["outcome"])
STALLED = Gauge("finsent_partitions_stalled",
                "Input partitions with lag whose committed offset has not moved for FINSENT_STALL_S")
LAG = Gauge("finsent_consumer_lag", "High watermark minus committed offset", ["topic", "partition"])
OUTBOX_PENDING = Gauge("finsent_outbox_pending", "Count records written but not yet published")
PARTITION_UPKEEP_ERRORS = Counter("finsent_partition_upkeep_errors_total", "Daily partition upkeep failures")
FETCH_ERRORS = Counter("finsent_fetch_errors_total", "Record batches the worker could not read (codec, corrupt batch)",
                       ["topic", "error"])
COMMIT_FAILURES = Counter("finsent_commit_failures_total", "Input offset commits not made (rebalance: refused in a "
                          "rebalance, re-read and absorbed; any other: retried)", ["kind"])
OFFSET_GAPS = Counter("finsent_offset_gaps_total", "Jumps in the input offsets delivered: records read again from the "
                      "first missing one, or offsets found not in the log", ["topic", "outcome"])
SEEK_REREADS = Counter("finsent_seek_rereads_total", "Fetches whose records were dropped because a seek (a rebalance) "
                       "ran while they were out; the partitions were sought again to where the seek put them")
PARTITIONS_HELD = Gauge("finsent_partitions_held", "Input partitions held at a record batch the worker cannot read")


# Dead-letter reasons are free text (a field name, an error message); the `reason` label is one of
# these fixed values, so a stream of unknown fields (`trace_<uuid>`) cannot grow the label set.
FIELDS = ("id", "source", "text", "published_at", "title", "url", "tickers", "lang")
REASON_KINDS = ("empty message (tombstone)", "invalid UTF-8", "not JSON", "not a JSON object", "unknown field",
                "NUL character", "model error", "postgres rejected", "oversize", *FIELDS, "other")


def reason_kind(reason: str) -> str:
    """A label for a dead-letter reason: always one of REASON_KINDS."""
    first = reason.split(";", 1)[0]
    if first.rstrip().endswith("unknown field"):
        return "unknown field"
    head = first.split(":", 1)[0].strip()
    for kind in ("not a JSON object", "NUL character", "empty message (tombstone)"):
        if head.startswith(kind):
            return kind
    field = head.split(".", 1)[0]  # pydantic's location of a list item: tickers.0
    if head in REASON_KINDS:
        return head
    return field if field in FIELDS else "other"
RECOVERY_STUCK = Gauge("finsent_table_recovery_stuck",
                       "1 while Faust's table recovery (every stream paused) has run longer than FINSENT_STALL_S")
UNASSIGNED = Gauge("finsent_worker_unassigned",
                   "1 when this worker has had no input partition for longer than FINSENT_STALL_S (/health 503)")
