import numpy as np
import pytest

from models.metrics import ece, fit_temperature, head_report, softmax


def test_head_report_by_hand():
    # true: 0 0 1 1 2 ; pred: 0 1 1 1 0
    probs = np.eye(3)[[0, 1, 1, 1, 0]] * 0.9 + 0.1 / 3
    r = head_report(probs, np.array([0, 0, 1, 1, 2, -100])[:5], ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["per_class"]["a"]["precision"] == pytest.approx(0.5) and r["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert r["per_class"]["b"]["f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert r["per_class"]["c"]["f1"] == 0.0
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_masked_rows_are_ignored():
    probs = np.eye(2)[[0, 1, 1]].astype(float)
    r = head_report(probs, np.array([0, -100, 1]), ["x", "y"])
    assert r["n"] == 2 and r["accuracy"] == 1.0


def test_ece_zero_when_calibrated_and_large_when_overconfident():
    y = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.2], (10, 1))
    assert ece(calibrated, y) == pytest.approx(0.0, abs=1e-9)
    wrong = np.tile([0.01, 0.99], (10, 1))
    assert ece(wrong, y) == pytest.approx(0.99 - 0.2)


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 3.0, y)  # logits inflated 3x -> T near 3
    assert 2.4 < t < 3.6
