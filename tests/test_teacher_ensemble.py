"""An ensemble of teachers: the soft labels are the mean of their logits, text by text (each file in
its own order); a teacher whose data is not recorded counts as non-commercial."""

import json

import numpy as np
import pytest

from models.data import DataError, Example, allowed_use
from models.distill import soft_labels, teacher_sources, text_key


def logits_file(path, texts, topic, sentiment):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, keys=np.array([text_key(t) for t in texts]), topic=np.asarray(topic, np.float32),
             sentiment=np.asarray(sentiment, np.float32), split=np.zeros(len(texts), np.int8))
    return str(path)


def test_ensemble_soft_labels_are_the_mean_per_text(tmp_path):
    rng = np.random.default_rng(3)
    texts = ["up", "down", "flat"]
    ta, sa = rng.normal(size=(3, 20)), rng.normal(size=(3, 3))
    tb, sb = rng.normal(size=(3, 20)), rng.normal(size=(3, 3))
    a = logits_file(tmp_path / "a" / "logits.npz", texts, ta, sa)
    b = logits_file(tmp_path / "b" / "logits.npz", texts[::-1], tb[::-1], sb[::-1])  # another order, same rows per text
    train = [Example("flat", topic=1), Example("up", sentiment=0)]
    t, s = soft_labels([a, b], train)
    np.testing.assert_allclose(t.numpy(), ((ta + tb) / 2)[[2, 0]], rtol=1e-5)
    np.testing.assert_allclose(s.numpy(), ((sa + sb) / 2)[[2, 0]], rtol=1e-5)
    one_t, _ = soft_labels(a, train)
    np.testing.assert_allclose(one_t.numpy(), ta[[2, 0]], rtol=1e-6)
    short = logits_file(tmp_path / "c" / "logits.npz", ["up"], ta[:1], sa[:1])
    with pytest.raises(DataError, match="c/logits.npz: no teacher logits for 1"):
        soft_labels([a, short], train)


def test_teacher_sources_come_from_teacher_json_and_an_unrecorded_teacher_is_not_commercial(tmp_path):
    a = logits_file(tmp_path / "a" / "logits.npz", ["x"], np.zeros((1, 20)), np.zeros((1, 3)))
    b = logits_file(tmp_path / "b" / "logits.npz", ["x"], np.zeros((1, 20)), np.zeros((1, 3)))
    mit = {"path": "d/twitter_financial_news_topic/topic_train.csv", "task": "topic", "licence": "MIT", "commercial": True}
    (tmp_path / "a" / "teacher.json").write_text(json.dumps({"sources": [mit]}))
    assert allowed_use(teacher_sources([a]))["commercial"]
    both = teacher_sources([a, b])
    assert [s["licence"] for s in both] == ["MIT", "unknown"] and both[1]["teacher"] == b
    assert not allowed_use(both)["commercial"]
