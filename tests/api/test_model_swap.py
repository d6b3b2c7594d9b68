"""The API follows FINSENT_MODEL_DIR/current as the worker does: after a re-point, scoring
answers come from the new version (and say so), /health and the metrics show it, and a broken
model is refused while the one in use goes on answering."""

from __future__ import annotations

import json

import pytest

from models.runtime import DEFAULT_ARTIFACT
from tests.api.conftest import ApiServer, api_settings, wait_until
from tests.conftest import swap_models_dir

pytestmark = pytest.mark.slow

V2 = "finsent-minilm-v2-api-hot"
TEXTS = ["Acme shares plunge after profit warning", "Fed holds rates steady"]


def swaps(metrics: str, outcome: str) -> float:
    line = next((x for x in metrics.splitlines() if x.startswith(f'finsent_api_model_swaps_total{{outcome="{outcome}"}}')),
                None)
    return float(line.split()[-1]) if line else 0.0


def test_api_follows_current_and_refuses_a_broken_model(db_url, tmp_path):
    models = swap_models_dir(tmp_path, V2)
    v1 = json.loads((DEFAULT_ARTIFACT / "finsent.json").read_text())["version"]
    with ApiServer(api_settings(db_url, model_dir=str(models), model_poll_s=0.2)) as api, api.client() as c:
        assert c.get("/health").json()["model"] is None  # nothing loaded before the first request
        first = c.post("/v1/score", json={"texts": TEXTS}).json()
        assert first["model_version"] == v1
        assert c.get("/health").json()["model"] == {"version": v1, "dir": str((models / "v1").resolve()),
                                                    "swap_error": None}
        before = c.get("/metrics").text

        (models / "current").write_text("v2")
        wait_until(lambda: c.post("/v1/score", json={"texts": TEXTS}).json()["model_version"] == V2, 30, "the swap",
                   interval=0.1)
        after = c.post("/v1/score", json={"texts": TEXTS}).json()
        assert after["model_version"] == V2
        # the same weights under a new id: the answers are the same model's
        assert [i["sentiment"] for i in after["items"]] == [i["sentiment"] for i in first["items"]]
        assert c.get("/health").json()["model"]["version"] == V2
        metrics = c.get("/metrics").text
        assert swaps(metrics, "swapped") == swaps(before, "swapped") + 1
        assert f'finsent_api_model_version{{version="{V2}"}} 1.0' in metrics
        assert f'finsent_api_model_version{{version="{v1}"}}' not in metrics

        (models / "current").write_text("broken")
        wait_until(lambda: c.post("/v1/score", json={"texts": TEXTS}).status_code == 200
                   and (c.get("/health").json()["model"]["swap_error"] or ""), 30, "the refused swap", interval=0.1)
        h = c.get("/health").json()["model"]
        assert h["version"] == V2 and "broken" in h["swap_error"]
        r = c.post("/v1/score", json={"texts": TEXTS})
        assert r.status_code == 200 and r.json()["model_version"] == V2  # the model in use goes on
        assert swaps(c.get("/metrics").text, "failed") == swaps(before, "failed") + 1
