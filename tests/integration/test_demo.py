"""The demo's own pieces, without the stack: its webhook receiver checks signatures the way
api/README.md tells receivers to (and the API signs them: api.webhooks.sign), and the lines it
prints for a person to try. The whole demo (worker + API + broker + Postgres, the planted alert
by webhook and on the live page) runs in tests/web/test_page.py."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from api.webhooks import sign
from finsent.demo import LEGAL_NOT_BAD, SURGE_TICKER, WebhookReceiver, demo_feed, links, replay_offline, verify
from stream.simulate import COMPANIES

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


@pytest.fixture(scope="module")
def scorer():
    from models.runtime import Scorer

    return Scorer.from_artifact(threads=1)


READ: dict = {}  # the scorer's readings of the simulated texts, shared by the tests below


def test_the_demo_alerts_on_its_planted_surge_and_nothing_else(scorer):
    """The demo's feed through the demo's detector settings, from a cold start: $ACME alerts,
    nothing else does. The simulator's feed as it is (its legal and regulatory headlines all bad
    news) alerted on that topic against the new-key prior within seconds in every seed tried,
    until the detector stopped testing cold topics against a ticker's prior: now it does not."""
    start = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    for seed in (0, 1, 2):
        opened = [d.key for d in replay_offline(scorer, [(seed, start)], read=READ) if d.action == "open"]
        assert opened == [f"ticker:{SURGE_TICKER}"], (seed, opened)
    raw = [d.key for d in replay_offline(scorer, [(0, start)], read=READ, legal_share=0) if d.action == "open"]
    assert raw == [f"ticker:{SURGE_TICKER}"], f"a cold topic alerted on the simulator's own feed: {raw}"


def test_the_legal_news_added_to_the_feed_is_not_bad_news_to_the_model(scorer):
    texts = [t.format(co=co) for t in LEGAL_NOT_BAD for co in ("Acme Corp", "Apple", "Boeing")]
    readings = scorer.predict(texts)
    assert [(p.topic, p.sentiment != "negative") for p in readings] == [("legal_regulation", True)] * len(texts)
    events = demo_feed(3600, 4, datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc), 60.0)
    legal = {t.format(co=name) for t in LEGAL_NOT_BAD for name in COMPANIES.values()}
    added = [i for i, e in enumerate(events) if e["text"].split(" ", 1)[-1] in legal or e["text"] in legal]
    assert 0.07 < len(added) / len(events) < 0.13
    assert not set(added) & set(range(2520, 2640))  # the planted surge is left as it is


def test_a_second_demo_run_on_the_same_data_alerts_again(scorer):
    """`make demo` twice on the same data, back to back: the detector's state carries over. The
    first run's alert must resolve and the second run's surge open a new one (with a warm-up no
    longer than a window, $ACME learned nothing before it was tested and its alert never resolved;
    with production's 10-min cool-down, a second run within ten minutes could not open one)."""
    first = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    second = first + timedelta(seconds=65)
    decisions = replay_offline(scorer, [(5, first), (6, second)], read=READ)
    assert {d.key for d in decisions} == {f"ticker:{SURGE_TICKER}"}, decisions
    acme = [(d.action, d.window_end) for d in decisions if d.key == f"ticker:{SURGE_TICKER}"]
    opens = [end for action, end in acme if action == "open"]
    assert len(opens) == 2, acme
    assert first.timestamp() + 40 <= opens[0] < second.timestamp() <= opens[1] < second.timestamp() + 60, acme
    assert any(action == "resolve" and opens[0] < end <= opens[1] for action, end in acme), acme


def test_the_demo_feed_names_companies_without_tags_and_the_linker_finds_them():
    """A share of the demo's wire items comes without the feed's tickers and without a cashtag: the
    worker's linker finds the company by its name alone; a share names two companies, both found."""
    from models.entities import Directory, Linker
    from stream.pipeline import link_event
    from stream.records import NewsEvent
    from stream.simulate import NEWS_SOURCES, PAIRS

    events = demo_feed(3600, 4, datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc), 60.0)
    linker = Linker(Directory.configured())
    named = {tk: co for tk, co in COMPANIES.items() if tk != SURGE_TICKER}  # Acme Corp is in no directory
    bare = [e for e in events if e["source"] in NEWS_SOURCES and not e.get("tickers") and "$" not in e["text"]
            and any(co in e["text"] for co in named.values())]
    assert len(bare) / sum(e["source"] in NEWS_SOURCES for e in events) > 0.08  # 25 % of the tagged ones
    found = wrong = total = 0
    for e in bare:  # a lone ambiguous name with nothing around it ("Apple schedules investor day") may stay unlinked
        want = {tk for tk, co in named.items() if co in e["text"]}
        got = {x.ticker for x in link_event(linker, NewsEvent(**e)) if "name" in x.sources}
        found, wrong, total = found + len(want & got), wrong + len(got - want), total + len(want)
    assert found / total > 0.9 and wrong == 0, (found, total, wrong)
    shapes = [p[0].split("{a}")[1].split("{b}")[0] for p in PAIRS]  # the words between the two names
    pairs = [e for e in events if any(s in e["text"] for s in shapes)]
    assert 0.02 < len(pairs) / len(events) < 0.06
    both = [len({x.ticker for x in link_event(linker, NewsEvent(**e))} & set(named)) == 2 for e in pairs]
    assert sum(both) / len(pairs) > 0.85
