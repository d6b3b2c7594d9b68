"""The spike detector alone: surges alert once with evidence; steady traffic never does."""

import random

import pytest

from stream.detector import DetectorConfig, KeyState, SpikeDetector, poisson_sf

CFG = DetectorConfig(window_s=10, min_count=8, p_threshold=1e-5, warmup_windows=3, cooldown_windows=2)


def run(events, cfg=CFG):
    det, state, out = SpikeDetector(cfg), KeyState(), []
    for ts, neg, eid in events:
        out += det.observe(state, "ticker:ACME", ts, neg, eid)
    return out, state


def steady(seconds, rate_per_s=1.0, neg_share=0.2, seed=0, t0=0.0):
    rng = random.Random(seed)
    n = int(seconds * rate_per_s)
    return [(t0 + i / rate_per_s, rng.random() < neg_share, f"bg{seed}-{i}") for i in range(n)]


def test_steady_background_never_alerts():
    for seed in range(5):
        out, state = run(steady(3600, 1.0, 0.2, seed))
        assert out == [], seed
        assert state.ewma_n == pytest.approx(10, rel=0.3)


def test_planted_surge_alerts_once_with_evidence_then_resolves():
    bg = steady(300, 1.0, 0.2)
    surge = [(300 + i * 0.2, True, f"s{i}") for i in range(40)]  # 40 negatives in 8 s
    after = steady(300, 1.0, 0.2, seed=1, t0=310)
    out, _ = run(bg + surge + after)
    opens = [d for d in out if d.action == "open"]
    assert len(opens) == 1
    a = opens[0]
    assert a.key == "ticker:ACME" and a.window_start == 300 and a.window_end == 310
    assert a.negatives >= 8 and a.n >= a.negatives and a.z >= 4 and a.p_value <= 1e-5
    assert 0.05 < a.baseline_rate < 0.4 and a.sample_event_ids[0] == "s0"
    assert [d.action for d in out] == ["open", "resolve"]
    # fired early: the alert's evidence is from the moment it crossed, not the window's end
    assert a.negatives < 40


def test_no_alert_during_warmup():
    surge = [(i * 0.1, True, f"s{i}") for i in range(50)]
    out, _ = run(surge)
    assert out == []


def test_volume_spike_of_ordinary_news_is_not_a_negative_surge():
    bg = steady(300, 1.0, 0.2)
    burst = steady(10, 20.0, 0.2, seed=3, t0=300)  # 20x volume at the usual negative share
    out, _ = run(bg + burst)
    assert out == []


def test_cooldown_blocks_realert_then_allows():
    bg = steady(300, 1.0, 0.2)
    s1 = [(300 + i * 0.2, True, f"a{i}") for i in range(40)]
    calm = steady(20, 1.0, 0.2, seed=2, t0=310)
    s2 = [(330 + i * 0.2, True, f"b{i}") for i in range(40)]  # inside the cool-down
    calm2 = steady(100, 1.0, 0.2, seed=4, t0=340)
    s3 = [(440 + i * 0.2, True, f"c{i}") for i in range(40)]
    out, _ = run(bg + s1 + calm + s2 + calm2 + s3)
    opens = [d.window_start for d in out if d.action == "open"]
    assert opens == [300, 440]


def test_state_round_trips_through_a_dict():
    _, state = run(steady(200, 1.0, 0.2))
    again = KeyState.from_dict(state.to_dict())
    assert again == state


def test_poisson_tail():
    assert poisson_sf(0, 3.0) == 1.0
    assert poisson_sf(1, 2.0) == pytest.approx(1 - 2.718281828 ** -2)
    assert poisson_sf(30, 2.0) < 1e-15


def test_out_of_order_events_within_lateness_still_count():
    cfg = DetectorConfig(window_s=10, min_count=8, warmup_windows=3, lateness_windows=3)
    bg = steady(300, 1.0, 0.2)
    surge = [(300 + i * 0.2, True, f"s{i}") for i in range(40)]
    ahead = steady(25, 1.0, 0.2, seed=9, t0=305)  # a faster partition already 2 windows ahead
    out, state = run(bg + ahead + surge, cfg)
    assert [d.action for d in out] == ["open"] and out[0].window_start == 300
    assert state.late == 0


def test_topic_surge_carried_by_one_ticker_is_left_to_that_ticker():
    det, cfg = SpikeDetector(CFG), CFG
    one, broad = KeyState(), KeyState()
    out = []
    for ts, neg, eid in steady(300, 2.0, 0.2):
        out += det.observe(one, "topic:earnings", ts, neg, eid, ("T" + eid[-1],))
        out += det.observe(broad, "topic:earnings", ts, neg, eid, ("T" + eid[-1],))
    for i in range(40):
        out += det.observe(one, "topic:earnings", 300 + i * 0.2, True, f"a{i}", ("ACME",))
        out += det.observe(broad, "topic:earnings", 300 + i * 0.2, True, f"b{i}", (f"T{i % 10}",))
    assert [(d.action, d.sample_event_ids[0][0]) for d in out] == [("open", "b")]


def test_long_silence_does_not_collapse_the_baseline():
    bg = steady(300, 1.0, 0.2)
    after_pause = steady(35, 1.0, 0.2, seed=5, t0=3900)  # one hour of nothing (worker down), then normal
    out, state = run(bg + after_pause)
    assert out == []
    assert state.ewma_n > 4  # about 10 per window before; only a few empty windows were learned
