"""The demo's own pieces, without the stack: its webhook receiver checks signatures the way
api/README.md tells receivers to (and the API signs them: api.webhooks.sign), and the lines it
prints for a person to try. The whole demo (worker + API + broker + Postgres, the planted alert
by webhook and on the live page) runs in tests/web/test_page.py."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import httpx

from api.webhooks import sign
from finsent.demo import SURGE_TICKER, WebhookReceiver, links, replay_offline, verify

BODY = json.dumps({"id": 7, "event": "opened", "delivery_id": 3, "subscription_id": 1,
                   "alert": {"alert_id": 5, "key_type": "ticker", "key": "ACME", "severity": "medium"}}).encode()


def test_verify_accepts_the_api_signature_and_refuses_others():
    headers = sign("whsec_demo", BODY)
    assert verify("whsec_demo", headers, BODY)
    assert not verify("whsec_other", headers, BODY)
    assert not verify("whsec_demo", headers, BODY + b" ")
    stale = sign("whsec_demo", BODY, timestamp=int(time.time()) - 3600)
    assert not verify("whsec_demo", stale, BODY)


def test_receiver_answers_204_to_signed_posts_and_401_otherwise():
    receiver = WebhookReceiver().start()
    receiver.secret = "whsec_demo"
    try:
        with httpx.Client(trust_env=False, timeout=5) as http:
            ok = http.post(receiver.url, content=BODY, headers={**sign("whsec_demo", BODY), "X-Finsent-Delivery": "3"})
            bad = http.post(receiver.url, content=BODY, headers=sign("whsec_wrong", BODY))
        assert (ok.status_code, bad.status_code) == (204, 401)
        got = receiver.received
        assert [(r.event, r.key, r.severity, r.verified, r.alert_id, r.delivery) for r in got] == [
            ("opened", "ticker:ACME", "medium", True, 5, "3"), ("opened", "ticker:ACME", "medium", False, 5, "")]
    finally:
        receiver.stop()


def test_links_printed_by_the_demo():
    from datetime import datetime, timezone

    out = links("http://127.0.0.1:8000", "fsk_x", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert out["OpenAPI page"] == "http://127.0.0.1:8000/docs"
    assert out["live page"] == "http://127.0.0.1:8000/"
    assert out["alert stream"].startswith("curl -N -H 'X-API-Key: fsk_x' 'http://127.0.0.1:8000/v1/stream/alerts?")
    assert out["ACME series"] == ("curl -s 'http://127.0.0.1:8000/v1/series?key_type=ticker&key=ACME&bucket=1m"
                                  "&start=2026-01-02T03%3A04%3A05Z'")


def test_a_second_demo_run_on_the_same_data_alerts_again():
    """`make demo` twice on the same data, back to back: the detector's state carries over. The
    first run's alert must resolve and the second run's surge open a new one (with a warm-up no
    longer than a window, $ACME learned nothing before it was tested and its alert never resolved;
    with production's 10-min cool-down, a second run within ten minutes could not open one)."""
    from models.runtime import Scorer

    first = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    second = first + timedelta(seconds=65)
    decisions = replay_offline(Scorer.from_artifact(threads=1), [(5, first), (6, second)])
    acme = [(d.action, d.window_end) for d in decisions if d.key == f"ticker:{SURGE_TICKER}"]
    opens = [end for action, end in acme if action == "open"]
    assert len(opens) == 2, acme
    assert first.timestamp() + 40 <= opens[0] < second.timestamp() <= opens[1] < second.timestamp() + 60, acme
    assert any(action == "resolve" and opens[0] < end <= opens[1] for action, end in acme), acme
