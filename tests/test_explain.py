"""Per-word explanations by occlusion, on the committed model (ONNX int8 on the CPU)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from finsent.cli import app
from models.explain import explain
from models.runtime import InvalidText, Scorer


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.from_artifact(threads=1)


@pytest.mark.parametrize("text, word", [
    ("The company reported results on Tuesday and the stock plunged", "plunged"),
    ("Acme said on Tuesday that revenue was in line and the quarter was disastrous", "disastrous"),
    ("Analysts at the bank described the merger as a fraud in a note on Monday", "fraud"),
])
def test_the_one_clearly_negative_word_carries_the_largest_negative_attribution(scorer, text, word):
    exp = scorer.explain(text)
    assert exp.prediction.sentiment == "negative"
    most_negative = min(exp.words, key=lambda w: w.sentiment)
    assert most_negative.word == word, [(w.word, round(w.sentiment, 3)) for w in exp.words]
    assert most_negative.sentiment < -0.5


def test_a_positive_word_pushes_the_score_up(scorer):
    exp = scorer.explain("Shares of the bank rose sharply after record earnings")
    assert exp.prediction.sentiment == "positive"
    assert max(exp.words, key=lambda w: w.sentiment).word in {"rose", "record", "sharply"}


def test_offsets_point_at_the_words_and_the_prediction_is_the_models(scorer):
    text = "Fed's Powell: rates stay higher-for-longer, $SPY slips 1.2%"
    exp = scorer.explain(text)
    assert exp.words and all(text[w.start:w.end] == w.word for w in exp.words)
    assert [w.start for w in exp.words] == sorted(w.start for w in exp.words)
    plain = scorer.predict([text])[0]
    assert (exp.prediction.topic, exp.prediction.sentiment) == (plain.topic, plain.sentiment)


def test_words_beyond_the_limit_are_counted_not_attributed(scorer):
    exp = explain(scorer, " ".join(f"word{i}" for i in range(40)) + " fell", max_words=10)
    assert len(exp.words) == 10 and exp.truncated_words == 31


@pytest.mark.parametrize("bad", ["", "   "])
def test_invalid_text_is_refused(scorer, bad):
    with pytest.raises(InvalidText):
        scorer.explain(bad)


def test_cli_prints_json_and_refuses_empty_text():
    r = CliRunner().invoke(app, ["explain", "The stock plunged after the profit warning", "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["prediction"]["sentiment"] == "negative"
    assert min(body["words"], key=lambda w: w["sentiment"])["word"] in {"plunged", "warning"}
    r = CliRunner().invoke(app, ["explain", "  "])
    assert r.exit_code == 2 and "empty text" in r.output
