"""GET /v1/events/{source}/{id}/explain: per-word attributions for a stored event (real model,
real Postgres)."""

from __future__ import annotations

import pytest

from tests.api.conftest import event, seed

pytestmark = pytest.mark.slow


def test_explain_a_stored_event(client, dsn):
    text = "The company reported results on Tuesday and the stock plunged"
    seed(dsn, [event(0, source="xp", sentiment="negative", text=text, tickers=("ACME", "BOLT"))])
    r = client.get("/v1/events/xp/e0/explain")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == text and body["source"] == "xp" and body["id"] == "e0"
    assert body["model_version"] and body["method"].startswith("occlusion")
    assert min(body["words"], key=lambda w: w["sentiment"])["word"] == "plunged"
    assert all(text[w["start"]:w["end"]] == w["word"] for w in body["words"])
    # the event's entity rows, the same as GET /v1/events gives them
    listed = client.get("/v1/events", params={"source": "xp"}).json()["items"]
    assert body["entities"] == next(e["entities"] for e in listed if e["id"] == "e0")
    assert sorted(x["ticker"] for x in body["entities"]) == ["ACME", "BOLT"]
    assert all(x["sources"] == ["tag"] and x["sentiment"] == "negative" for x in body["entities"])


def test_explain_holds_no_connection_while_the_model_runs(api, client, dsn):
    """The model's run is the slow part: the request's pooled connection goes back before it."""
    seed(dsn, [event(1, source="xq")])
    state = api.server.config.app.state
    original, in_use = state.scorer.explain, []

    async def spy(text):
        in_use.append(state.pool.get_size() - state.pool.get_idle_size())
        return await original(text)
    state.scorer.explain = spy
    try:
        assert client.get("/v1/events/xq/e1/explain").status_code == 200
    finally:
        state.scorer.explain = original
    assert in_use == [0]


def test_explain_unknown_event_is_404(client):
    r = client.get("/v1/events/xp/nope/explain")
    assert r.status_code == 404 and "not found" in r.json()["detail"]
