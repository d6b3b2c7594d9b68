"""Training smoke run on a tiny slice: the loss goes down; checkpoint/resume continues."""

import json

import pytest

from models.train import TrainConfig, Trainer

pytestmark = pytest.mark.slow

NEG = ["{} shares plunge after profit warning", "{} misses estimates and stock tanks", "{} cuts guidance as shares slide"]
POS = ["{} beats estimates and shares soar", "{} raises dividend after record profit", "{} stock jumps on strong sales"]
TOPIC = {"dividend": "{} declares quarterly dividend", "ipo": "{} prices IPO above range",
         "earnings": "{} reports third-quarter earnings"}


def tiny_sources(tmp_path, licence: str = ""):
    """A tiny sentiment CSV and topic JSONL as --source specs (with `licence` named, if given)."""
    cos = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark"]
    sent = tmp_path / "sent.csv"
    sent.write_text("text,label\n" + "".join(f"{t.format(c)},0\n" for t in NEG for c in cos)
                    + "".join(f"{t.format(c)},1\n" for t in POS for c in cos))
    topic = tmp_path / "topic.jsonl"
    topic.write_text("".join(json.dumps({"text": t.format(c), "label": k}) + "\n" for k, t in TOPIC.items() for c in cos))
    if licence:
        return [f"sentiment:csv:{sent}:twitter-sentiment:{licence}", f"topic:jsonl:{topic}::{licence}"]
    return [f"sentiment:csv:{sent}:twitter-sentiment", f"topic:jsonl:{topic}"]


def config(tmp_path, **kw):
    base = dict(output=str(tmp_path / "run"), sources=tiny_sources(tmp_path), epochs=3, batch_size=8, lr=1e-4,
                max_length=24, dev_fraction=0.2, patience=5, device="cpu")
    return TrainConfig(**(base | kw))


def test_loss_goes_down_and_artifact_is_written(tmp_path):
    report = Trainer(config(tmp_path)).run()
    history = json.loads((tmp_path / "run" / "training.json").read_text())["history"]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert set(report["heads"]) == {"topic", "sentiment"}
    for f in ("model.safetensors", "finsent.json", "tokenizer/tokenizer.json", "encoder/config.json"):
        assert (tmp_path / "run" / f).exists()


def test_resume_continues_from_checkpoint(tmp_path):
    Trainer(config(tmp_path, epochs=1)).run()
    t = Trainer(config(tmp_path, epochs=2, resume=True))
    t.run()
    history = json.loads((tmp_path / "run" / "training.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
