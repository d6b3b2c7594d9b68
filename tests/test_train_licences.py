"""Licences as data: every training file carries its licence; the `commercial` selection trains on
no non-commercial file (nor does its teacher), and the card says non-commercial exactly when one
of the files that trained the model (the teacher's included) is."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from models.data import (DataError, SourceSpec, allowed_use, licence_of, selection_sources)
from models.distill import text_key
from models.labels import TOPICS
from models.teacher import TeacherConfig, write_teacher_record

ROOT = Path(__file__).resolve().parents[1]
COS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell"]


def shared_layout(tmp_path) -> Path:
    """A tiny data folder laid out like the shared one (same folder and file names)."""
    d = tmp_path / "data"
    for sub in ("twitter_financial_news_topic", "twitter_financial_news_sentiment", "financial_phrasebank"):
        (d / sub).mkdir(parents=True)
    (d / "twitter_financial_news_topic/topic_train.csv").write_text(
        "text,label\n" + "".join(f"{c} declares a dividend,4\n{c} prices its IPO,11\n" for c in COS))
    (d / "twitter_financial_news_sentiment/sent_train.csv").write_text(
        "text,label\n" + "".join(f"{c} shares plunge,0\n{c} shares soar,1\n{c} holds meeting,2\n" for c in COS))
    (d / "financial_phrasebank/Sentences_50Agree.txt").write_text(
        "".join(f"{c} profit fell .@negative\n{c} sales rose .@positive\n" for c in COS))
    return d


def card_module():
    spec = importlib.util.spec_from_file_location("model_card", ROOT / "scripts" / "model_card.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_each_shared_file_carries_its_licence_and_unknown_files_allow_no_commercial_use(tmp_path):
    d = shared_layout(tmp_path)
    assert licence_of(d / "twitter_financial_news_topic/topic_train.csv").id == "MIT"
    assert not licence_of(d / "financial_phrasebank/Sentences_AllAgree.txt").commercial
    assert not licence_of(d / "semeval2017_task5/microblogs.json").commercial
    assert licence_of(d / "fiqa_2018_task1/x.json").id == "unknown"
    own = tmp_path / "mine.csv"
    assert not SourceSpec.parse(f"sentiment:csv:{own}").licence.commercial
    assert SourceSpec.parse(f"sentiment:csv:{own}::CC0-1.0").licence.commercial
    with pytest.raises(DataError, match="unknown licence 'MTI'"):
        SourceSpec.parse(f"sentiment:csv:{own}::MTI")
    assert [s.path.parent.name for s in selection_sources(d, "commercial")] == [
        "twitter_financial_news_topic", "twitter_financial_news_sentiment"]
    assert selection_sources(d, "nc")[-1].path.name == "Sentences_50Agree.txt"
    with pytest.raises(DataError, match="unknown data selection"):
        selection_sources(d, "all")
    assert not allowed_use([])["commercial"]


def student(tmp_path, data_dir, name, data, teacher=""):
    from models.train import TrainConfig, Trainer

    cfg = TrainConfig(output=str(tmp_path / name), data_dir=str(data_dir), data=data, epochs=1, batch_size=8,
                      max_length=16, dev_fraction=0.25, device="cpu", teacher=teacher, version=f"test-{name}")
    Trainer(cfg).run()
    return tmp_path / name


def nc_teacher(tmp_path, data_dir) -> str:
    """A teacher run's output as `finsent teacher train --data nc` leaves it: logits for every text
    and teacher.json naming its files (PhraseBank among them)."""
    from models.data import load_source

    run = tmp_path / "teacher"
    run.mkdir()
    specs = selection_sources(data_dir, "nc")
    texts = [e.text for s in specs for e in load_source(s)]
    rng = np.random.default_rng(0)
    np.savez(run / "logits.npz", keys=np.array([text_key(t) for t in texts]),
             topic=rng.normal(size=(len(texts), len(TOPICS))).astype(np.float32),
             sentiment=rng.normal(size=(len(texts), 3)).astype(np.float32), split=np.zeros(len(texts), np.int8))
    head = {"accuracy": 0.5, "macro_f1": 0.5}
    write_teacher_record(run, TeacherConfig(output=str(run), data="nc"), specs, len(texts), 0,
                         [{"epoch": 1, "trained_layers": 4, "train_loss": 1.0, "topic_accuracy": 0.5,
                           "sentiment_accuracy": 0.5, "selection": 0.5}],
                         {"heads": {"topic": head, "sentiment": head}, "by_source": {}})
    return str(run / "logits.npz")


@pytest.mark.slow
def test_commercial_runs_record_no_nc_file_and_the_card_says_nc_exactly_when_one_trained_it(tmp_path):
    data = shared_layout(tmp_path)
    runs = {"commercial": student(tmp_path, data, "commercial", "commercial"),
            "nc": student(tmp_path, data, "nc", "nc"),
            "nc teacher": student(tmp_path, data, "distilled", "commercial", teacher=nc_teacher(tmp_path, data))}
    render = card_module().render
    for name, run in runs.items():
        record = json.loads((run / "training.json").read_text())
        files = record["sources"] + record["teacher_sources"]
        assert all(len(f["sha256"]) == 64 and f["licence"] for f in files)
        nc_in = any(not f["commercial"] for f in files)
        assert nc_in == (name != "commercial"), name
        assert nc_in == any("financial_phrasebank" in f["path"] for f in files)
        card = render(run)
        assert ("non-commercial use only" in card) == nc_in, name
        assert ("commercial use allowed" in card) == (not nc_in), name
    commercial = json.loads((runs["commercial"] / "training.json").read_text())
    assert {f["licence"] for f in commercial["sources"]} == {"MIT"} and commercial["use"]["commercial"]
    assert "Sentences_50Agree.txt (CC-BY-NC-SA-3.0)" in render(runs["nc teacher"])


def test_the_commercial_entity_head_reads_the_mit_tweets_alone(tmp_path):
    """`models.entity_sentiment train --selection commercial` builds its sets from the MIT tweets
    (single-entity tweets and pairs of them) and reads neither FiQA nor SemEval: here they are
    absent, so reading them would fail; the default selection does read them."""
    from models.entity_sentiment import build_dataset

    d = tmp_path / "data" / "twitter_financial_news_sentiment"
    d.mkdir(parents=True)
    names = ["Apple", "Microsoft", "Tesla", "Boeing", "Netflix", "Amazon", "Nvidia", "Intel", "Walmart", "Disney"]
    rows = [f"{n} shares plunge after the results,0\n{n} shares soar on strong guidance,1\n"
            f"{n} to hold its annual meeting in May,2\n" for n in names for _ in range(3)]
    (d / "sent_train.csv").write_text("text,label\n" + "".join(f"{r.split(',')[0]} ({i}),{r.split(',')[1]}"
                                                               for i, r in enumerate("".join(rows).splitlines(True))))
    sets, stats = build_dataset(tmp_path / "data", n_pairs=40, n_pairs_test=12, selection="commercial")
    sources = {i.source for part in sets.values() for i in part}
    assert sources == {"tweet_single", "tweet_pair"}, sources
    assert stats["licences"] == ["twitter_financial_news_sentiment: MIT"]
    with pytest.raises(FileNotFoundError):
        build_dataset(tmp_path / "data", n_pairs=40, n_pairs_test=12)
    with pytest.raises(ValueError):
        build_dataset(tmp_path / "data", selection="nc")
