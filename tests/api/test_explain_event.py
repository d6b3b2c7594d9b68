"""GET /v1/events/{source}/{id}/explain: per-word attributions for a stored event (real model,
real Postgres)."""

from __future__ import annotations

import pytest

from tests.api.conftest import event, seed

pytestmark = pytest.mark.slow


def test_explain_a_stored_event(client, dsn):
    text = "The company reported results on Tuesday and the stock plunged"
    seed(dsn, [event(0, source="xp", sentiment="negative", text=text)])
    r = client.get("/v1/events/xp/e0/explain")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == text and body["source"] == "xp" and body["id"] == "e0"
    assert body["model_version"] and body["method"].startswith("occlusion")
    assert min(body["words"], key=lambda w: w["sentiment"])["word"] == "plunged"
    assert all(text[w["start"]:w["end"]] == w["word"] for w in body["words"])


def test_explain_unknown_event_is_404(client):
    r = client.get("/v1/events/xp/nope/explain")
    assert r.status_code == 404 and "not found" in r.json()["detail"]
