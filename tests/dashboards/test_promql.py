"""The Prometheus panels name only metrics (and labels) that the worker's and the API's /metrics
really expose: the names are read from the prometheus_client collectors of stream/metrics.py
and api/metrics.py, with the sample suffixes a scrape shows (_total, _bucket/_sum/_count).

    .venv/bin/python -m pytest tests/dashboards/test_promql.py -q
"""

from __future__ import annotations

import importlib
import re

import pytest
from prometheus_client.metrics import MetricWrapperBase

from tests.dashboards.conftest import dashboards

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count")}
API_NAMES = {"finsent_api_requests_total", "finsent_api_request_seconds_bucket", "finsent_api_request_seconds_sum",
             "finsent_api_request_seconds_count", "finsent_api_sse_clients", "finsent_webhook_deliveries_total"}
METRIC = re.compile(r"\bfinsent_[a-zA-Z0-9_]+")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def exposed(*modules: str) -> dict[str, set[str]]:
    """Sample name → label names, for every collector defined in the given modules."""
    out: dict[str, set[str]] = {}
    for name in modules:
        for m in vars(importlib.import_module(name)).values():
            if isinstance(m, MetricWrapperBase):
                family = m.describe()[0]
                for suffix in SUFFIXES[family.type]:
                    extra = {"le"} if suffix == "_bucket" else set()
                    out[family.name + suffix] = set(m._labelnames) | extra
    return out


def prom_targets() -> list[tuple[str, dict]]:
    return [(f"{d['uid']}:{p['title']}:{t['refId']}", t) for d in dashboards() for p in d.get("panels", [])
            for t in p.get("targets", []) if "expr" in t]


METRICS = exposed("stream.metrics", "api.metrics")
TARGETS = prom_targets()


def test_api_metrics_module_has_the_agreed_names():
    assert API_NAMES <= set(exposed("api.metrics"))


def test_pipeline_dashboard_has_prometheus_panels():
    assert len(TARGETS) >= 20


@pytest.mark.parametrize("target", [t for _, t in TARGETS], ids=[i for i, _ in TARGETS])
def test_promql_names_exist(target):
    used = set(METRIC.findall(target["expr"]))
    assert used, target["expr"]
    assert used <= set(METRICS), f"unknown metrics: {sorted(used - set(METRICS))}"
    labels = set().union(*(METRICS[u] for u in used))
    grouped = {x.strip() for g in BY.findall(target["expr"]) for x in g.split(",") if x.strip()}
    in_legend = set(LEGEND.findall(target.get("legendFormat", "")))
    assert grouped | in_legend <= labels, f"unknown labels: {sorted((grouped | in_legend) - labels)}"
    assert target["datasource"]["uid"] == "finsent-prometheus"
