"""`finsent train --from MODEL --feedback FILE`: a planted systematic error (the shipped model
calls a "zorblax review" neutral; analysts say it is bad news) is learned from the corrections,
measured on corrections held out of training, while rehearsal keeps the original data's accuracy.
The result is a new version with its lineage, and the worker's runtime can load it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from finsent.cli import app
from models.runtime import DEFAULT_ARTIFACT, Scorer
from tests.conftest import SHIPPED_VERSION
from tests.test_train import tiny_sources

pytestmark = pytest.mark.slow

COS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell"]
PRODUCTS = ["its cloud unit", "the new phone", "a retail chain", "its chip line", "the bank arm"]


def corrections(tmp_path):
    """The API's feedback export format (JSONL), one correction per text."""
    f = tmp_path / "feedback.jsonl"
    rows = [{"id": i, "source": "wire", "event_id": f"e{i}", "text": f"{c} announces a zorblax review of {p}",
             "model_topic": "company_product_news", "model_sentiment": "neutral", "topic": None,
             "sentiment": "negative", "note": "zorblax = regulator's forced review", "created_by": "analyst-1"}
            for i, (c, p) in enumerate((c, p) for c in COS for p in PRODUCTS)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_planted_error_is_learned_from_feedback_without_forgetting(tmp_path):
    base = Scorer.from_artifact(threads=1)
    unseen = ["Contoso announces a zorblax review of its payments arm", "Soylent announces a zorblax review of a mine"]
    assert {p.sentiment for p in base.predict(unseen)} == {"neutral"}  # the planted error

    out = tmp_path / "v1-fb"
    args = ["train", "--from", str(DEFAULT_ARTIFACT), "--feedback", str(corrections(tmp_path)), "--output", str(out),
            "--rehearsal", "150", "--device", "cpu", "--version", "finsent-test-fb",
            # the tiny rehearsal set (47 examples) gives 10 steps an epoch: a higher rate than the default,
            # which is set for a 2,000-example rehearsal (README: the real-data run)
            "--lr", "3e-5", "--epochs", "3"]
    for s in tiny_sources(tmp_path):
        args += ["--source", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output

    lineage = json.loads((out / "training.json").read_text())["lineage"]
    assert lineage["parent"] == SHIPPED_VERSION and lineage["version"] == "finsent-test-fb"
    fb = lineage["feedback"]
    assert fb["corrections"] == 40 and fb["held_out"] == 8 and fb["trained_on"] == 32
    held_before = lineage["before"]["held_out_corrections"]["sentiment"]["accuracy"]
    held_after = lineage["after"]["held_out_corrections"]["sentiment"]["accuracy"]
    assert held_before == 0.0 and held_after == 1.0, lineage
    for head, b in lineage["before"]["original_dev"].items():  # rehearsal: the original data is not forgotten
        assert lineage["after"]["original_dev"][head]["accuracy"] >= b["accuracy"] - 0.1, (head, lineage)
    # the weights are merged back toward the base: the smallest share of the step that keeps the
    # trained corrections (chosen on them alone), every smaller share on the grid learned less
    merge = lineage["merge"]
    curve = merge["trained_corrections_accuracy"]
    assert curve[str(merge["m"])] == curve["1.0"] and 0 < merge["m"] <= 1.0
    assert all(acc["sentiment"] < curve["1.0"]["sentiment"] for m, acc in curve.items() if float(m) < merge["m"])
    assert "Lineage: finsent-test-fb" in (out / "MODEL_CARD.md").read_text()

    tuned = Scorer.from_artifact(out, threads=1)  # the int8 graph was built: the runtime takes it
    assert tuned.version == "finsent-test-fb"
    assert {p.sentiment for p in tuned.predict(unseen)} == {"negative"}  # generalises to new names
    assert tuned.predict(["Acme beats estimates and shares soar"])[0].sentiment == "positive"


def test_bad_feedback_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "sentiment": "gloomy"}) + "\n")
    r = CliRunner().invoke(app, ["train", "--feedback", str(bad), "--output", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown sentiment 'gloomy'" in r.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "x", "sentiment": None, "topic": ""}) + "\n")
    r = CliRunner().invoke(app, ["train", "--feedback", str(empty), "--output", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no corrections" in r.output
    r = CliRunner().invoke(app, ["train", "--feedback", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no such file" in r.output
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": "Acme announces a zorblax review", "sentiment": "negative"}) + "\n")
    r = CliRunner().invoke(app, ["train", "--feedback", str(good), "--output", str(tmp_path)])  # never overwritten
    assert r.exit_code == 2 and "not empty" in r.output and bad.exists()


def test_keep_targets_pull_every_head_but_a_corrected_one():
    """Learning without forgetting: the base model's own predictions anchor every mixed-in text,
    except on the head an analyst corrected, where the correction must win."""
    import torch

    from models.data import Example
    from models.feedback import keep_targets
    from models.network import load_artifact, load_tokenizer
    from models.train import tokenize

    model, meta = load_artifact(DEFAULT_ARTIFACT)
    tok = load_tokenizer(DEFAULT_ARTIFACT / "tokenizer")
    mix = [Example("Acme announces a zorblax review", sentiment=0, source="feedback"),
           Example("Fed holds rates", topic=1, source="topic_train.csv"),
           Example("Acme beats estimates", topic=5, sentiment=2, source="feedback")]
    (t, s), (w_t, w_s) = keep_targets(model, mix, tokenize(tok, mix, meta.max_length), tok.pad_token_id, "cpu")
    assert t.shape == (3, 20) and s.shape == (3, 3)
    assert w_t.tolist() == [1.0, 1.0, 0.0] and w_s.tolist() == [0.0, 1.0, 0.0]
    ref = Scorer.from_artifact(backend="torch", precision="fp32").logits(["Fed holds rates"])[0][0]
    torch.testing.assert_close(t[1], torch.from_numpy(ref), atol=1e-4, rtol=1e-4)  # the base model's own logits
