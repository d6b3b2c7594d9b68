"""Pipeline health (Prometheus): throughput, consumer lag per partition, dead letters by reason,
batch size, model / write / end-to-end latency, Postgres retries, the detector's watermark, and
the API's request rate, latency, SSE clients and webhook deliveries. Metric names come from
stream/metrics.py and api/metrics.py; tests/dashboards checks every name used here.

    python -m dashboards.main     # regenerates dashboards/generated/pipeline.json
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.common import PROMETHEUS, dashboard, promql, series, single, stacked

UID = "finsent-pipeline"
RATE = "[$__rate_interval]"


def quantiles(metric: str, by: str = "") -> list:
    """p50/p95/p99 of a histogram, optionally split by a label."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [promql(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{RATE})))", f"p{int(q * 100)}{suffix}",
                   ref) for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))]


def prom_series(title: str, targets: list, unit: str = "short", w: int = 12) -> db.Panel:
    panel = series(title, targets[0], unit=unit, w=w, ds=PROMETHEUS)
    for t in targets[1:]:
        panel = panel.with_target(t)
    return panel


def halted_stat() -> db.Panel:
    return single("Worker halted (1 = holding a batch it cannot store)", promql("max(finsent_halted)"), w=5, ds=PROMETHEUS)


def db_up_stat() -> db.Panel:
    return single("Postgres writes OK", promql("min(finsent_db_up)"), w=5, ds=PROMETHEUS)


def total_lag_stat() -> db.Panel:
    return single("Consumer lag (messages)", promql("sum(finsent_consumer_lag)"), w=5, ds=PROMETHEUS)


def stalled_stat() -> db.Panel:
    return single("Input partitions stalled or held", promql("sum(finsent_partitions_stalled) + sum(finsent_partitions_held)"),
                  w=5, ds=PROMETHEUS)


def outbox_stat() -> db.Panel:
    return single("Detector outbox pending", promql("sum(finsent_outbox_pending)"), w=4, ds=PROMETHEUS)


def throughput() -> db.Panel:
    return prom_series("Throughput (per second)", [
        promql(f"sum(rate(finsent_scored_total{RATE}))", "scored (new rows)", "A"),
        promql(f"sum by (topic) (rate(finsent_consumed_total{RATE}))", "consumed {{topic}}", "B"),
        promql(f"sum(rate(finsent_duplicates_total{RATE}))", "duplicates absorbed", "C"),
        promql(f"sum(rate(finsent_duplicates_retimed_total{RATE}))", "of which re-sent with another time", "D"),
        promql(f"sum(rate(finsent_duplicates_archived_total{RATE}))", "of which already archived", "E")],
        unit="ops")


def consumer_lag() -> db.Panel:
    return prom_series("Consumer lag per partition", [
        promql("sum by (topic, partition) (finsent_consumer_lag)", "{{topic}}/{{partition}}")])


def dead_letters() -> db.Panel:
    return stacked(prom_series("Dead letters by reason (per second)", [
        promql(f"sum by (reason) (rate(finsent_deadlettered_total{RATE}))", "{{reason}}")], unit="ops"))


def batch_size() -> db.Panel:
    return prom_series("Batch size", quantiles("finsent_batch_size") + [
        promql(f"sum(rate(finsent_batch_size_sum{RATE})) / sum(rate(finsent_batch_size_count{RATE}))", "mean", "D")])


def model_latency() -> db.Panel:
    return prom_series("Model latency per batch", quantiles("finsent_model_latency_seconds"), unit="s")


def write_latency() -> db.Panel:
    return prom_series("Postgres write latency per batch", quantiles("finsent_write_latency_seconds"), unit="s")


def e2e_latency() -> db.Panel:
    return prom_series("End-to-end latency (Kafka append → committed row)", quantiles("finsent_e2e_latency_seconds"),
                       unit="s")


def db_retries() -> db.Panel:
    return prom_series("Postgres retries and failed batches (per second)", [
        promql(f"sum by (kind) (rate(finsent_db_retries_total{RATE}))", "retry {{kind}}", "A"),
        promql(f"sum by (stage) (rate(finsent_batch_failures_total{RATE}))", "failed at {{stage}}", "B")], unit="ops")


def detector() -> db.Panel:
    return prom_series("Detector: watermark lag and late events", [
        promql("max(finsent_watermark_lag_seconds)", "watermark lag (s)", "A"),
        promql(f"sum by (key_type) (rate(finsent_late_events_total{RATE}))", "late {{key_type}} /s", "B"),
        promql(f"sum by (action) (rate(finsent_alerts_total{RATE}))", "alerts {{action}} /s", "C")])


def api_requests() -> db.Panel:
    return stacked(prom_series("API requests by route and status (per second)", [
        promql(f"sum by (route, status) (rate(finsent_api_requests_total{RATE}))", "{{route}} {{status}}")],
        unit="reqps"))


def api_latency() -> db.Panel:
    return prom_series("API latency by route", quantiles("finsent_api_request_seconds", by="route"), unit="s")


def api_streams() -> db.Panel:
    return prom_series("SSE clients, webhook deliveries, slow clients cut", [
        promql("sum(finsent_api_sse_clients)", "SSE clients", "A"),
        promql(f"sum by (outcome) (rate(finsent_webhook_deliveries_total{RATE}))", "webhooks {{outcome}} /s", "B"),
        promql(f"sum by (phase) (rate(finsent_api_client_cuts_total{RATE}))", "slow clients cut ({{phase}}) /s", "C")])


def build() -> db.Dashboard:
    panels = [halted_stat(), db_up_stat(), total_lag_stat(), stalled_stat(), outbox_stat(), throughput(), consumer_lag(),
              dead_letters(), batch_size(), model_latency(), write_latency(), e2e_latency(), db_retries(),
              detector(), api_requests(), api_latency(), api_streams()]
    return dashboard(UID, "finsent · Pipeline health",
                     "Worker and API metrics scraped by Prometheus (worker:6066, api:8000).", panels, time_from="now-1h")
