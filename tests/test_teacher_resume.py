"""The teacher's sittings: a tiny random MPNet (4 layers) trained on a tiny labelled set, stopped
mid-epoch by a real SIGTERM and by --max-steps, resumed, ends with the weights of an uninterrupted
run of the same seed; the unfreeze schedule trains exactly the layers it names, epoch by epoch."""

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch

from models.teacher import TeacherConfig, TeacherRun, trainable_schedule, train_teacher
from tests.test_train import tiny_sources



@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A 4-layer MPNet with random weights and the packaged model's tokenizer, saved like the real one."""
    from transformers import MPNetConfig, MPNetModel

    from models.artifact import DEFAULT_ARTIFACT

    where = tmp_path_factory.mktemp("mpnet")
    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=66, pad_token_id=0)
    MPNetModel(cfg, add_pooling_layer=False).save_pretrained(where)
    for f in (DEFAULT_ARTIFACT / "tokenizer").iterdir():
        shutil.copy(f, where / f.name)
    return where


def sources(tmp_path):
    return tiny_sources(tmp_path, licence="MIT")


def config(tmp_path, encoder_dir, name, **kw):
    base = dict(output=str(tmp_path / name), encoder=str(encoder_dir), sources=sources(tmp_path), epochs=3,
                unfreeze="1,2,4", batch_size=8, lr=5e-3, head_lr=5e-3, max_length=24, dev_fraction=0.2,
                device="cpu", checkpoint_every=2, warmup_ratio=0.1)
    return TeacherConfig(**(base | kw))


def weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


class SigtermAt:
    """A progress stand-in that sends this process a real SIGTERM when the run reaches a step."""

    def __init__(self, step):
        self.step, self.seen = step, 0

    def add_task(self, *a, **kw):
        return 0

    def advance(self, *a, **kw):
        pass

    def update(self, task, completed=None, **kw):
        self.seen += 1
        if self.seen == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_stopped_and_resumed_mid_epoch_ends_with_the_uninterrupted_weights(tmp_path, encoder_dir):
    whole = train_teacher(config(tmp_path, encoder_dir, "whole"))
    steps = TeacherRun(config(tmp_path, encoder_dir, "probe")).batches_per_epoch
    assert len(steps) == 3 and steps[0] >= 4

    # sitting 1: a real SIGTERM in the middle of epoch 2 (a cached-states epoch)
    first = train_teacher(config(tmp_path, encoder_dir, "split"), SigtermAt(steps[0] + 2))
    assert first["stopped"] == "SIGTERM" and first["epoch"] == 2 and 0 < first["in_epoch"] < steps[1]
    # sitting 2: three more steps, then stop
    second = train_teacher(config(tmp_path, encoder_dir, "split", resume=True, max_steps=3))
    assert second["stopped"] == "max_steps 3" and second["step"] == first["step"] + 3
    with pytest.raises(ValueError, match="pass --resume"):
        train_teacher(config(tmp_path, encoder_dir, "split"))
    with pytest.raises(ValueError, match="other settings.*lr"):
        train_teacher(config(tmp_path, encoder_dir, "split", resume=True, lr=1e-3))
    last = train_teacher(config(tmp_path, encoder_dir, "split", resume=True))  # to the end

    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-5, msg=k)
    za, zb = np.load(tmp_path / "whole" / "logits.npz"), np.load(tmp_path / "split" / "logits.npz")
    np.testing.assert_allclose(zb["sentiment"], za["sentiment"], atol=1e-5)
    assert last["heads"]["topic"]["accuracy"] == whole["heads"]["topic"]["accuracy"]
    record = json.loads((tmp_path / "split" / "teacher.json").read_text())
    assert [h["trained_layers"] for h in record["history"]] == [1, 2, 4]
    assert record["use"]["commercial"] and {s["licence"] for s in record["sources"]} == {"MIT"}


def changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_the_schedule_trains_the_layers_it_names_epoch_by_epoch(tmp_path, encoder_dir):
    from transformers import AutoModel

    pretrained = {f"encoder.{k}": v for k, v in AutoModel.from_pretrained(encoder_dir, add_pooling_layer=False)
                  .state_dict().items()}
    steps = TeacherRun(config(tmp_path, encoder_dir, "probe")).batches_per_epoch
    layer = lambda i: f"encoder.encoder.layer.{i}."  # noqa: E731
    emb = "encoder.embeddings.word_embeddings"
    expect = [  # after epoch 1 (top 1 of 4), 2 (top 2), 3 (all, embeddings too)
        {3}, {2, 3}, {0, 1, 2, 3}]
    for epoch, trained in enumerate(expect):
        stop = steps[epoch] if epoch < 2 else 0
        train_teacher(config(tmp_path, encoder_dir, "sched", resume=epoch > 0, max_steps=stop))
        now = weights(tmp_path / "sched")
        assert {i for i in range(4) if changed(pretrained, now, layer(i))} == trained, f"epoch {epoch + 1}"
        assert changed(pretrained, now, emb) == (epoch == 2)


def test_schedule_parsing_and_what_set_trainable_leaves_frozen(encoder_dir):
    from transformers import AutoModel

    from models.teacher import Teacher

    cfg = TeacherConfig(output="x", unfreeze="4,8,12", epochs=5)
    assert trainable_schedule(cfg, 12) == [4, 8, 12, 12, 12]
    assert trainable_schedule(TeacherConfig(output="x", frozen_layers=8, epochs=2), 12) == [4, 4]
    for bad in ("8,4", "0,4", "4,13", "four"):
        with pytest.raises(ValueError):
            trainable_schedule(TeacherConfig(output="x", unfreeze=bad), 12)
    model = Teacher(AutoModel.from_pretrained(encoder_dir, add_pooling_layer=False))
    model.set_trainable(2)
    grads = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[3] for n in grads if n.startswith("encoder.encoder.layer.")} == {"2", "3"}
    assert not any(n.startswith(("encoder.embeddings", "encoder.encoder.relative")) for n in grads)
    assert {"topic_head.weight", "sentiment_head.weight"} <= grads
    model.set_trainable(4)
    assert all(p.requires_grad for p in model.parameters())


def test_the_cli_ends_a_sitting_with_exit_75_and_resume_finishes(tmp_path, encoder_dir):
    from typer.testing import CliRunner

    from finsent.cli import app

    out = tmp_path / "cli"
    args = ["teacher", "train", "--output", str(out), "--encoder", str(encoder_dir), "--unfreeze", "2,4",
            "--epochs", "2", "--batch-size", "8", "--checkpoint-every", "2", "--device", "cpu"]
    args += [a for s in sources(tmp_path) for a in ("--source", s)]
    first = CliRunner().invoke(app, args + ["--max-steps", "3"])
    assert first.exit_code == 75, first.output
    assert "run again with --resume" in first.output and not (out / "logits.npz").exists()
    done = CliRunner().invoke(app, args + ["--resume"])
    assert done.exit_code == 0, done.output
    assert "teacher sentiment: accuracy" in done.output and (out / "logits.npz").exists()


def test_an_ensemble_member_with_another_seed_keeps_the_students_dev_split(tmp_path, encoder_dir):
    base = TeacherRun(config(tmp_path, encoder_dir, "s13", seed=13))
    other = TeacherRun(config(tmp_path, encoder_dir, "s14", seed=14, split_seed=13))
    unpinned = TeacherRun(config(tmp_path, encoder_dir, "s14b", seed=14))
    dev = sorted(e.text for e in base.dev)
    assert sorted(e.text for e in other.dev) == dev
    assert sorted(e.text for e in unpinned.dev) != dev  # the split does depend on the seed it is given
    assert other.epoch_batches(0) != base.epoch_batches(0)  # while the order (and init) follow --seed


def test_a_sitting_that_ends_while_caching_keeps_its_place(tmp_path, encoder_dir):
    stopped = train_teacher(config(tmp_path, encoder_dir, "early", epochs=1, max_minutes=1e-9))
    assert stopped["stopped"] == "max_minutes" and stopped["step"] == 0
    assert not list((tmp_path / "early" / "cache" / "d3").glob("chunk_*"))
    done = train_teacher(config(tmp_path, encoder_dir, "early", epochs=1, resume=True))
    assert "heads" in done and list((tmp_path / "early" / "cache" / "d3").glob("chunk_*"))
