"""Per-entity (target-aware) sentiment: a small head over the shipped, frozen encoder.

    python -m models.entity_sentiment train [--data DIR] --out var/entity_sentiment
    python -m models.entity_sentiment export --model DIR       # = finsent export (the head has no graph of its own)
    (DIR: the shared data folder, default FINSENT_DATA_DIR = ../shared/data)

The encoder of the shipped artifact is not touched, so the topic and item-sentiment outputs
stay exactly as they are. The head reads the encoder's last hidden states (B, S, 384), a mask of
the target's sub-word tokens and, per token, a bucket of its signed distance (in tokens) to the
nearest target token x the clause boundaries crossed on the way (target_features). 4 attention
heads (query: the target's mean state + the item mean; keys: the states; plus a learned bias per
bucket) pool the target's clause in the encoder's own space; a linear layer initialised from the
shipped item sentiment head reads it, plus a small MLP on (target vector, pooled vector), giving
negative / neutral / positive. 0.20 M parameters, stored in fp16 as `entity_head.safetensors`
(0.4 MB) beside the artifact, with `entity_head.json`.

Training side: this module builds the data sets, trains and evaluates the head. The head itself is
models/entity_head.py (torch), its inputs models/entity_inputs.py (torch-free, shared with
serving). Runtime: `models.runtime.Scorer.entity_sentiment([(text, spans), ...])`; on the ONNX
path the head runs in numpy (models.entity_head.NumpyHead) on the token states the item graph
(model.onnx / model.int8.onnx, built by `finsent export` / `make setup`) outputs beside its
logits, so an item's encoder runs once; torch is the reference.

Training data (read from the shared data folder, never copied): FiQA 2018 task 1 (headlines and
posts: sentence, target, score), SemEval-2017 task 5 (headlines: company; microblogs: cashtag,
rehydrated text), single-entity tweets of twitter_financial_news_sentiment (their own label), and
two-entity sentences built from pairs of those tweets. Scores map to labels by SCORE_THRESHOLD.
`--selection commercial` trains on the MIT tweets alone (single-entity tweets and the pairs built
from them; no FiQA, no SemEval): the head a commercially usable model (v3) may carry.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.artifact import DEFAULT_ARTIFACT, read_meta_file
from models.data import default_data_dir
from models.entity_head import HeadConfig, load_entity_model, load_head, new_head, save_head  # noqa: F401
from models.entity_inputs import (HEAD_FILE, HEAD_META, LABELS, MAX_DISTANCE, N_BUCKETS, ONNX_ATOL,  # noqa: F401
                                  PAD_BUCKET, SCORE_THRESHOLD, encode_pairs, has_head, is_boundary, pad_pairs,
                                  target_features)

JOINERS = (", while ", "; ", ". ", " | ", ", but ", " - ", " as ", ", and ")
URL = re.compile(r"https?://\S+")


def score_label(score: float) -> int:
    return 0 if score < -SCORE_THRESHOLD else 2 if score > SCORE_THRESHOLD else 1


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class Item:
    text: str
    spans: list[list[int]]  # the target's [start, end) character spans
    label: int
    source: str
    group: str  # items sharing a text share a group (kept on one side of a split)
    ticker: str = ""


def _find_spans(text: str, target: str) -> list[list[int]]:
    """Every case-insensitive, word-bounded occurrence of target (with or without '$')."""
    t = target.strip().lstrip("$")
    if not t:
        return []
    pat = re.compile(r"(?<![A-Za-z0-9])\$?" + re.escape(t) + r"(?![A-Za-z0-9])", re.IGNORECASE)
    return [[m.start(), m.end()] for m in pat.finditer(text)]


def load_fiqa(data: Path) -> tuple[list[Item], dict]:
    items, skipped = [], 0
    for kind in ("headline", "post"):
        raw = json.loads((Path(data) / f"fiqa_2018_task1/task1_{kind}_ABSA_train.json").read_text(encoding="utf-8"))
        for key, v in raw.items():
            text = v["sentence"].replace("\n", " ").strip()
            for info in v["info"]:
                spans = _find_spans(text, info["target"])
                if not spans:
                    skipped += 1
                    continue
                items.append(Item(text, spans, score_label(float(info["sentiment_score"])), f"fiqa_{kind}",
                                  f"fiqa-{kind}-{key}", info["target"]))
    return items, {"fiqa_target_not_found": skipped}


def load_semeval(data: Path) -> tuple[list[Item], list[Item], dict]:
    """(train, test): headlines train JSON / test CSV with gold; microblogs rehydrated train / test CSV."""
    d = Path(data) / "semeval2017_task5"
    train, test, skipped = [], [], 0

    def add(out, text, target, score, source, group):
        nonlocal skipped
        text = (text or "").replace("\n", " ").strip()
        spans = _find_spans(text, target) if text else []
        if not spans:
            skipped += 1
            return
        out.append(Item(text, spans, score_label(float(score)), source, group, target.lstrip("$")))

    for r in json.loads((d / "subtask2_headlines/Headline_Trainingdata.json").read_text(encoding="utf-8-sig")):
        add(train, r["title"], r["company"], r["sentiment"], "semeval_headline", f"seh-{r['title']}")
    for r in json.loads((d / "subtask1_microblogs/Microblog_Trainingdata-rehydrated_slim.json").read_text()):
        add(train, r.get("text"), r["cashtag"], r["sentiment_score"], "semeval_microblog", f"sem-{r.get('text')}")
    with open(d / "deepfsa_csv/Headlines_Testdata_withscores.csv", encoding="utf-8-sig", newline="") as f:
        for r in csv.DictReader(f):
            add(test, r["title"], r["company"], r["sentiment score"], "semeval_headline", f"seh-{r['title']}")
    with open(d / "deepfsa_csv/Microblogs_Testdata_withscores.csv", encoding="utf-8-sig", newline="") as f:
        for r in csv.DictReader(f):
            add(test, r["text"], r["cashtag"], r["sentiment score"], "semeval_microblog", f"sem-{r['text']}")
    # a text in both (reposts): keep it out of training
    seen = {i.group for i in test}
    dropped = sum(i.group in seen for i in train)
    train = [i for i in train if i.group not in seen]
    return train, test, {"semeval_target_not_found": skipped, "semeval_train_dropped_as_in_test": dropped}


def load_tweets(data: Path, linker) -> tuple[list[Item], list[Item], dict]:
    """Single-entity tweets, split exactly as the shipped model split them (dev 10 %, seed 13): the
    (train, dev) halves; dev tweets were never seen by the encoder nor by this head."""
    from models.data import SourceSpec, load_source, stratified_split

    spec = SourceSpec("sentiment", "csv", Path(data) / "twitter_financial_news_sentiment/sent_train.csv",
                      "twitter-sentiment")
    train, dev = stratified_split(load_source(spec), 0.1, 13)
    stats = {}

    def singles(examples, name):
        out = []
        for ex in examples:
            text = re.sub(r"\s+", " ", URL.sub("", ex.text)).strip(" -")
            if not 15 <= len(text) <= 150:
                continue
            ents = [e for e in linker.link(text) if e.spans]
            if len(ents) != 1:
                continue
            out.append(Item(text, [list(s) for s in ents[0].spans], ex.sentiment, "tweet_single", f"tw-{text}",
                            ents[0].ticker))
        stats[f"tweets_{name}_single_entity"] = len(out)
        return out

    return singles(train, "train"), singles(dev, "dev"), stats


def build_pairs(singles: list[Item], n: int, seed: int, opposite_share: float = 0.5) -> list[Item]:
    """Two-entity texts 'clause about A<joiner>clause about B' from two single-entity tweets about
    different companies, each entity keeping its clause's label. `opposite_share` of the pairs are
    positive+negative; the rest any other label pair (same labels included), so the head cannot
    learn that two entities always disagree."""
    rng = random.Random(seed)
    by = {k: [s for s in singles if s.label == k] for k in range(3)}
    out = []
    for j in range(n):
        if rng.random() < opposite_share:
            la, lb = rng.sample([0, 2], 2)
        else:
            la, lb = rng.randrange(3), rng.randrange(3)
            if {la, lb} == {0, 2}:
                lb = 1
        for _ in range(20):
            a, b = rng.choice(by[la]), rng.choice(by[lb])
            if a.ticker != b.ticker and a.text != b.text:
                break
        else:
            continue  # no two different companies with these labels
        joiner = rng.choice(JOINERS)
        first = a.text.rstrip(" .;,")
        second = b.text if joiner != ". " else b.text[:1].upper() + b.text[1:]
        text = first + joiner + second
        shift = len(first) + len(joiner)
        group = f"pair-{seed}-{j}"
        out.append(Item(text, a.spans, a.label, "tweet_pair", group, a.ticker))
        out.append(Item(text, [[s + shift, e + shift] for s, e in b.spans], b.label, "tweet_pair", group, b.ticker))
    return out


def split_groups(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    groups = sorted({i.group for i in items})
    random.Random(seed).shuffle(groups)
    held = set(groups[: round(len(groups) * fraction)])
    return [i for i in items if i.group not in held], [i for i in items if i.group in held]


# the licence of each source the head can be trained on (written into entity_head.json)
LICENCES = {"fiqa": "FiQA 2018 task 1: no licence in the release (research use)",
            "semeval": "SemEval-2017 task 5: annotations CC BY-NC-SA 4.0, texts under the platforms' terms",
            "tweets": "twitter_financial_news_sentiment: MIT"}
SELECTIONS = {"all": ("fiqa", "semeval", "tweets"), "commercial": ("tweets",)}


def build_dataset(data: Path, seed: int = 13, n_pairs: int = 6000, n_pairs_test: int = 1500,
                  max_singles: int = 4000, selection: str = "all") -> tuple[dict[str, list[Item]], dict]:
    """{'train', 'dev', 'test'}. test is held out: FiQA 20 % of sentences, SemEval's official test
    sets (gold from DeepFSA), half of the tweets the shipped model held out (its dev split) and
    pairs built only from those. dev picks the epoch: 10 % of the FiQA/SemEval training sentences,
    the other half of the held-out tweets and pairs built from them. Training tweets and pairs come
    from the tweets the shipped encoder trained on."""
    from models.entities import Directory, Linker

    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {sorted(SELECTIONS)}, not {selection!r}")
    linker = Linker(Directory.configured())
    if "fiqa" in SELECTIONS[selection]:
        fiqa, s1 = load_fiqa(data)
        sem_train, sem_test, s2 = load_semeval(data)
    else:  # the MIT tweets alone: FiQA and SemEval are not read
        fiqa, s1, sem_train, sem_test, s2 = [], {}, [], [], {}
    fiqa_train, fiqa_test = split_groups(fiqa, 0.2, seed)
    tw_train, tw_dev, s3 = load_tweets(data, linker)
    rng = random.Random(seed)
    rng.shuffle(tw_train)
    singles = tw_train[:max_singles]
    pairs = build_pairs(tw_train, n_pairs, seed)
    labelled_train, labelled_dev = split_groups(fiqa_train + sem_train, 0.1, seed + 1)
    tw_test, tw_select = split_groups(tw_dev, 0.5, seed + 2)  # held-out tweets: half picks the epoch
    train = labelled_train + singles + pairs
    dev = labelled_dev + tw_select + build_pairs(tw_select, n_pairs_test // 3, seed + 50)
    test = fiqa_test + sem_test + tw_test + build_pairs(tw_test, n_pairs_test, seed + 100)
    stats = {**s1, **s2, **s3, "selection": selection, "licences": [LICENCES[k] for k in SELECTIONS[selection]],
             "sizes": {k: _count(v) for k, v in (("train", train), ("dev", dev), ("test", test))}}
    return {"train": train, "dev": dev, "test": test}, stats


def _count(items: list[Item]) -> dict:
    out: dict[str, dict] = {}
    for i in items:
        c = out.setdefault(i.source, {"n": 0, "negative": 0, "neutral": 0, "positive": 0})
        c["n"] += 1
        c[LABELS[i.label]] += 1
    return out


# ----------------------------------------------------------------------------------------------
# features: the frozen encoder once over every distinct text (cached, resumable)


def cache_features(items: list[Item], artifact: Path, path: Path, progress=None, batch: int = 64) -> dict:
    """Last hidden states (fp16) of every distinct text, plus the shipped item-sentiment logits (the
    baseline), saved to `path` (.npz); reused when it already holds the same texts."""
    import torch

    from models.network import load_artifact, mean_pool
    from models.runtime import Tokenizer

    texts = sorted({i.text for i in items})
    path = Path(path)
    hidden = [None] * len(texts)
    item_logits = np.zeros((len(texts), 3), np.float32)
    mask_urls = bool(read_meta_file(artifact).get("mask_urls", True))  # read as the item pass reads them
    z = np.load(path, allow_pickle=False) if path.exists() else None
    if z is not None and ("mask_urls" in z.files and bool(z["mask_urls"])) == mask_urls:
        # reuse what an earlier run encoded the same way (same artifact: the cache sits in its --out)
        if list(z["texts"]) == texts:
            return {k: z[k] for k in z.files}
        old = {t: i for i, t in enumerate(z["texts"].tolist())}
        starts = np.concatenate([[0], np.cumsum(z["lengths"])])
        old_hidden, old_logits = z["hidden"], z["item_logits"]  # NpzFile reads an array per access
        for i, t in enumerate(texts):
            if t in old:
                j = old[t]
                hidden[i], item_logits[i] = old_hidden[starts[j]:starts[j + 1]], old_logits[j]
    model, meta = load_artifact(artifact)
    encs = Tokenizer(artifact, meta.max_length, mask_urls).encodings(texts)  # as the item pass tokenises
    order = sorted((i for i in range(len(texts)) if hidden[i] is None), key=lambda i: len(encs[i].ids))
    task = progress.add_task("encoder features", total=len(order)) if progress else None
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        width = max(len(encs[i].ids) for i in idx)
        ids = np.zeros((len(idx), width), np.int64)
        att = np.zeros((len(idx), width), np.int64)
        for r, i in enumerate(idx):
            ids[r, :len(encs[i].ids)], att[r, :len(encs[i].ids)] = encs[i].ids, 1
        ti, ta = torch.from_numpy(ids), torch.from_numpy(att)
        with torch.inference_mode():  # one encoder pass: the item sentiment head as in MultiTaskModel.forward
            h = model.encoder(input_ids=ti, attention_mask=ta).last_hidden_state
            sl = model.sentiment_head(model.dropout(mean_pool(h, ta)))
        for r, i in enumerate(idx):
            hidden[i] = h[r, :len(encs[i].ids)].numpy().astype(np.float16)
        item_logits[idx] = sl.numpy()
        if progress:
            progress.advance(task, len(idx))
    lengths = np.array([len(x) for x in hidden], np.int64)
    out = {"texts": np.array(texts), "hidden": np.concatenate(hidden), "lengths": lengths,
           "item_logits": item_logits, "mask_urls": np.array(mask_urls)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


class Features:
    def __init__(self, z: dict, artifact: Path, max_length: int):
        from models.runtime import Tokenizer

        self.index = {t: i for i, t in enumerate(z["texts"].tolist())}
        self.starts = np.concatenate([[0], np.cumsum(z["lengths"])])
        self.hidden, self.item_logits = z["hidden"], z["item_logits"]
        # as cache_features encoded (a cache from before the address mask read them whole)
        self.tok = Tokenizer(artifact, max_length, bool(z["mask_urls"]) if "mask_urls" in z else False)

    def tensors(self, items: list[Item]):
        """Padded (hidden, attention, target, distance, labels) numpy arrays for a list of items."""
        encs = self.tok.encodings([i.text for i in items])
        rows = [self.index[i.text] for i in items]
        lens = [int(self.starts[r + 1] - self.starts[r]) for r in rows]
        width = max(lens)
        h = np.zeros((len(items), width, self.hidden.shape[1]), np.float32)
        att = np.zeros((len(items), width), np.int64)
        tm = np.zeros((len(items), width), np.int64)
        dist = np.full((len(items), width), PAD_BUCKET, np.int64)
        for k, (it, enc, r, n) in enumerate(zip(items, encs, rows, lens)):
            h[k, :n] = self.hidden[self.starts[r]:self.starts[r] + n]
            att[k, :n] = 1
            tm[k, :n], dist[k, :n] = target_features(enc.offsets, [tuple(s) for s in it.spans], n, it.text)
        return h, att, tm, dist, np.array([i.label for i in items], np.int64)


# ----------------------------------------------------------------------------------------------
# training and evaluation


def predict_head(head, feats: Features, items: list[Item], batch: int = 256) -> np.ndarray:
    import torch

    out = []
    head.eval()
    with torch.inference_mode():
        for s in range(0, len(items), batch):
            h, a, t, d, _ = feats.tensors(items[s:s + batch])
            out.append(torch.softmax(head(*map(torch.from_numpy, (h, a, t, d))), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def metrics(items: list[Item], probs: np.ndarray, feats: Features) -> dict:
    """Per source: n, head accuracy, macro-F1, and the baseline 'the entity gets the item's sentiment'
    (the shipped sentiment head). On pairs: accuracy where the two entities' labels are opposite
    (positive vs negative), and the share of such pairs with both entities right."""
    pred = probs.argmax(1)
    item = np.array([feats.item_logits[feats.index[i.text]].argmax() for i in items])
    gold = np.array([i.label for i in items])
    out = {}
    for src in sorted({i.source for i in items}) + ["all"]:
        sel = np.array([src in ("all", i.source) for i in items])
        out[src] = {"n": int(sel.sum()), "accuracy": _acc(pred[sel], gold[sel]),
                    "macro_f1": _macro_f1(pred[sel], gold[sel]),
                    "baseline_item_sentiment_accuracy": _acc(item[sel], gold[sel])}
    pairs: dict[str, list[int]] = {}
    for k, i in enumerate(items):
        if i.source == "tweet_pair":
            pairs.setdefault(i.group, []).append(k)
    opp = [v for v in pairs.values() if len(v) == 2 and {gold[v[0]], gold[v[1]]} == {0, 2}]
    if opp:
        flat = [k for v in opp for k in v]
        out["tweet_pair_opposite"] = {
            "pairs": len(opp), "entity_accuracy": _acc(pred[flat], gold[flat]),
            "both_right": float(np.mean([pred[a] == gold[a] and pred[b] == gold[b] for a, b in opp])),
            "baseline_entity_accuracy": _acc(item[flat], gold[flat]),
            "baseline_both_right": 0.0}  # one label for both cannot get two opposite labels right
    return out


def _acc(p, g) -> float:
    return round(float((p == g).mean()), 4) if len(g) else float("nan")


def _macro_f1(p, g) -> float:
    f = []
    for c in range(3):
        tp, fp, fn = ((p == c) & (g == c)).sum(), ((p == c) & (g != c)).sum(), ((p != c) & (g == c)).sum()
        if tp + fp + fn:
            f.append(2 * tp / (2 * tp + fp + fn))
    return round(float(np.mean(f)), 4) if f else float("nan")


@dataclass
class TrainConfig:
    data: str = field(default_factory=default_data_dir)
    out: str = "var/entity_sentiment"
    artifact: str = ""
    seed: int = 13
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    n_pairs: int = 6000
    n_pairs_test: int = 1500
    max_singles: int = 4000
    dropout: float = 0.1
    freeze_cls: bool = False
    selection: str = "all"  # all | commercial (the MIT tweets alone)


def train(cfg: TrainConfig, resume: bool = True, install: bool = False) -> dict:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    artifact = Path(cfg.artifact or DEFAULT_ARTIFACT)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    meta = read_meta_file(artifact)
    sets, stats = build_dataset(Path(cfg.data), cfg.seed, cfg.n_pairs, cfg.n_pairs_test, cfg.max_singles,
                                cfg.selection)
    (out / "data_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols) as progress:
        z = cache_features(sets["train"] + sets["dev"] + sets["test"], artifact, out / "features.npz", progress)
        feats = Features(z, artifact, int(meta["max_length"]))
        # The random stream is re-seeded here and replays what a cold cache draws (building the
        # shipped model, before its weights load, draws its initialisation), so a warm and a cold
        # cache train the same head (the shipped head was trained from a cold cache).
        from models.network import load_artifact

        torch.manual_seed(cfg.seed)
        load_artifact(artifact)
        head = new_head(HeadConfig(dropout=cfg.dropout, freeze_cls=cfg.freeze_cls))
        shipped, _ = load_artifact(artifact)
        head.cls.load_state_dict(shipped.sentiment_head.state_dict())
        head.cls.requires_grad_(not head.cfg.freeze_cls)
        del shipped
        opt = torch.optim.AdamW([q for q in head.parameters() if q.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * math.ceil(len(sets["train"]) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
        start, history, best = 0, [], (-1.0, None)
        ckpt = out / "checkpoint.pt"
        if resume and ckpt.exists():
            state = torch.load(ckpt, weights_only=False)
            if state["config"] == asdict(cfg):
                head.load_state_dict(state["head"])
                opt.load_state_dict(state["opt"])
                sched.load_state_dict(state["sched"])
                start, history, best = state["epoch"], state["history"], (state["best_acc"], state["best"])
                progress.console.print(f"resumed after epoch {start}")
        task = progress.add_task("train", total=steps, completed=start * math.ceil(len(sets["train"]) / cfg.batch_size))
        loss_fn = torch.nn.CrossEntropyLoss()
        for epoch in range(start, cfg.epochs):
            t0, total, rng = time.time(), 0.0, random.Random(cfg.seed * 1000 + epoch)
            order = sets["train"][:]
            rng.shuffle(order)
            head.train()
            for s in range(0, len(order), cfg.batch_size):
                h, a, t, d, y = map(torch.from_numpy, feats.tensors(order[s:s + cfg.batch_size]))
                loss = loss_fn(head(h, a, t, d), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(y)
                progress.advance(task)
            dev = metrics(sets["dev"], predict_head(head, feats, sets["dev"]), feats)
            row = {"epoch": epoch + 1, "train_loss": round(total / len(order), 4),
                   "seconds": round(time.time() - t0, 1), "dev_accuracy": dev["all"]["accuracy"],
                   "dev_pair_accuracy": dev.get("tweet_pair", {}).get("accuracy")}
            history.append(row)
            progress.console.print(row)
            if dev["all"]["accuracy"] > best[0]:
                best = (dev["all"]["accuracy"], {k: v.clone() for k, v in head.state_dict().items()})
            torch.save({"config": asdict(cfg), "head": head.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "epoch": epoch + 1, "history": history,
                        "best_acc": best[0], "best": best[1]}, ckpt)
    head.load_state_dict(best[1])
    head.eval()
    test = metrics(sets["test"], predict_head(head, feats, sets["test"]), feats)
    report = {"config": asdict(cfg), "data": stats, "history": history, "best_dev_accuracy": best[0], "test": test,
              "artifact": str(artifact), "version": meta["version"]}
    card = {"trained_on": "see MODEL_CARD.md (Per-entity sentiment)", "selection": cfg.selection,
            "licences": stats["licences"], "history": history, "test": test,
            "label_thresholds": f"score < -{SCORE_THRESHOLD} negative, > {SCORE_THRESHOLD} positive, else neutral",
            "command": f"python -m models.entity_sentiment train --data {cfg.data} --out {cfg.out}"
                       + (f" --selection {cfg.selection}" if cfg.selection != "all" else "")}
    save_head(head, out, card)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if install:
        save_head(head, artifact, card)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.entity_sentiment", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="cache encoder features, train the head, report held-out metrics")
    t.add_argument("--data", default=None, help="the shared data folder (default: FINSENT_DATA_DIR)")
    t.add_argument("--out", default="var/entity_sentiment")
    t.add_argument("--artifact", default="", help="artifact whose frozen encoder to use (default: the shipped one)")
    t.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    t.add_argument("--seed", type=int, default=TrainConfig.seed)
    t.add_argument("--dropout", type=float, default=TrainConfig.dropout)
    t.add_argument("--freeze-cls", action="store_true", help="keep the item sentiment head's weights fixed")
    t.add_argument("--selection", choices=sorted(SELECTIONS), default="all",
                   help="commercial: the MIT tweets alone (for a commercially usable model)")
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--install", action="store_true", help="also write the head into the artifact directory")
    e = sub.add_parser("export", help="rebuild the item graphs (they output the token states the head reads)")
    e.add_argument("--model", default="")
    e.add_argument("--no-int8", action="store_true")
    b = sub.add_parser("bench", help="ms per item: predict vs entity_sentiment for two entities (ONNX, CPU)")
    b.add_argument("--model", default="")
    b.add_argument("--n", type=int, default=256)
    b.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.cmd == "train":
        cfg = TrainConfig(data=a.data or default_data_dir(), out=a.out, artifact=a.artifact, epochs=a.epochs, seed=a.seed,
                          dropout=a.dropout, freeze_cls=a.freeze_cls, selection=a.selection)
        report = train(cfg, resume=not a.no_resume, install=a.install)
        print(json.dumps(report["test"], indent=2))
    elif a.cmd == "export":
        from models.export import export

        print(export(Path(a.model or DEFAULT_ARTIFACT), int8=not a.no_int8))
    elif a.cmd == "bench":
        print(json.dumps(bench(a.model, a.n, a.threads), indent=2))
    return 0


BENCH_PAIRS = [("Apple beats estimates, Samsung slides on weak phone sales", "Apple", "Samsung"),
               ("Ford shares tumble after recall, while Toyota raises its profit forecast", "Ford", "Toyota"),
               ("$NFLX subscriber growth soars; $DIS cuts guidance and shares fall 5% in late trading",
                "$NFLX", "$DIS"),
               ("Boeing plunges after crash report as Airbus wins record order from IndiGo", "Boeing", "Airbus")]


def bench(model: str = "", n: int = 256, threads: int = 1) -> dict:
    """Best of 3: predict() on n two-entity texts, then entity_sentiment() on their 2n (text, entity)
    pairs, ONNX Runtime fp32 on the CPU with `threads` threads (the int8 item path is what ships;
    predict is timed as shipped: precision auto)."""
    from models.runtime import Scorer

    d = Path(model or DEFAULT_ARTIFACT)
    scorer = Scorer.from_artifact(d, threads=threads)
    texts = [BENCH_PAIRS[i % len(BENCH_PAIRS)][0] + f" ({i})" for i in range(n)]
    pairs = []
    for t, (_, x, y) in zip(texts, (BENCH_PAIRS[i % len(BENCH_PAIRS)] for i in range(n))):
        pairs += [(t, [[t.index(x), t.index(x) + len(x)]]), (t, [[t.index(y), t.index(y) + len(y)]])]
    scorer.predict(texts[:8])
    scorer.entity_sentiment(pairs[:8])
    best = {}
    runs = (("predict", lambda: scorer.predict(texts)), ("entity_sentiment", lambda: scorer.entity_sentiment(pairs)))
    for name, fn in runs:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    return {"texts": n, "pairs": 2 * n, "threads": threads,
            "predict_ms_per_item": round(1000 * best["predict"] / n, 3),
            "entity_sentiment_ms_per_pair": round(1000 * best["entity_sentiment"] / (2 * n), 3),
            "entity_sentiment_ms_per_two_entity_item": round(1000 * best["entity_sentiment"] / n, 3)}


if __name__ == "__main__":
    raise SystemExit(main())
