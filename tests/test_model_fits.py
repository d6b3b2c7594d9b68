"""Issue 17, item 6: a model whose version or labels do not fit the scored row's columns is
refused when it is loaded (worker start, hot swap, API), with the reason; and the label of a
dead-letter reason comes from a fixed set (item 10)."""

import dataclasses
import uuid

import orjson
import pytest

from core.db import ScoredEvent
from models import runtime
from models.runtime import DEFAULT_ARTIFACT, Meta, Scorer, Tokenizer
from stream.metrics import REASON_KINDS, reason_kind
from stream.records import Invalid, decode


@pytest.fixture(scope="module")
def parts():
    meta = Meta.load(DEFAULT_ARTIFACT)
    return Scorer.from_artifact(DEFAULT_ARTIFACT).backend, Tokenizer(DEFAULT_ARTIFACT, meta.max_length), meta


def test_limits_equal_the_columns():
    cols = ScoredEvent.__table__.c
    assert runtime.VERSION_MAX_CHARS == cols.model_version.type.length
    assert runtime.TOPIC_MAX_CHARS == cols.topic.type.length


def test_a_77_character_version_is_refused_at_load(parts):
    backend, tok, meta = parts
    long = "finsent-minilm-v2+fb-20260101-abcdef+fb-20260102-abcdef+fb-20260103-abcdef123"
    assert len(long) == 77
    with pytest.raises(RuntimeError, match="version is 77 characters; scored_event.model_version holds 1 to 64"):
        Scorer(backend, tok, dataclasses.replace(meta, version=long)).check()


def test_other_sentiment_label_names_are_refused_at_load(parts):
    backend, tok, meta = parts
    with pytest.raises(RuntimeError, match="sentiment labels"):
        Scorer(backend, tok, dataclasses.replace(meta, sentiments=("bearish", "neutral", "bullish"))).check()


def test_a_topic_label_longer_than_its_column_is_refused(parts):
    backend, tok, meta = parts
    with pytest.raises(RuntimeError, match="topic labels"):
        Scorer(backend, tok, dataclasses.replace(meta, topics=("x" * 65,) + meta.topics[1:])).check()


def test_the_shipped_model_fits(parts):
    backend, tok, meta = parts
    Scorer(backend, tok, meta).check()


OK = {"id": "a1", "source": "wire", "text": "Acme falls", "published_at": "2026-01-05T10:00:00Z"}


def test_unknown_field_names_share_one_label():
    labels = set()
    for _ in range(200):
        with pytest.raises(Invalid) as err:
            decode(orjson.dumps({**OK, f"trace_{uuid.uuid4()}": 1}), 1000)
        labels.add(reason_kind(str(err.value)))
    assert labels == {"unknown field"}


@pytest.mark.parametrize("reason,label", [
    ("not JSON: unexpected character: line 1 column 1 (char 0)", "not JSON"),
    ("not a JSON object (list)", "not a JSON object"),
    ("empty message (tombstone)", "empty message (tombstone)"),
    ("tickers.3: String should have at most 16 characters", "tickers"),
    ("published_at: Value error, 0001-01-01T00:00:00+01:00 out of range", "published_at"),
    ("model error: RuntimeError: boom " + "x" * 100, "model error"),
    ("postgres rejected: StringDataRightTruncationError: value too long", "postgres rejected"),
    ("NUL character in title", "NUL character"),
    ("some new reason nobody planned for", "other"),
    pytest.param(f"{uuid.uuid4()}: whatever", "other", id="random-uuid-other"),
])
def test_reason_labels_are_a_fixed_set(reason, label):
    assert reason_kind(reason) == label and label in REASON_KINDS
