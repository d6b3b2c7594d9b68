"""Evaluate an artifact through the runtime (any backend): `finsent evaluate --model DIR`.

Default data: the artifact's own dev split (the sources, seed and dev fraction it was trained
with, from training.json), so the numbers match the model card.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.data import Example, SourceSpec, default_sources, load_source, selection_sources, stratified_split
from models.labels import SENTIMENTS, TOPICS
from models.metrics import head_report, markdown, softmax
from models.runtime import Scorer


def dev_examples(model_dir: Path, data_dir: Path, sources: list[str]):
    if sources:
        return [ex for s in sources for ex in load_source(SourceSpec.parse(s))]
    record = json.loads((Path(model_dir) / "training.json").read_text())
    cfg = record["config"]
    specs = [SourceSpec(s["task"], s["format"], Path(s["path"]), s["label_map"]) for s in record["sources"]]
    if not all(s.path.exists() for s in specs):  # trained elsewhere: same file names under data_dir
        specs = selection_sources(data_dir, cfg["data"]) if cfg.get("data") and not cfg.get("sources") \
            else default_sources(data_dir)
    return [ex for s in specs for ex in stratified_split(load_source(s), cfg["dev_fraction"], cfg["seed"])[1]]


def evaluate(model_dir: Path, data_dir: Path, sources: list[str], backend: str = "onnx", precision: str = "auto"):
    examples = dev_examples(model_dir, data_dir, sources)
    scorer = Scorer.from_artifact(model_dir, backend=backend, precision=precision)
    t_logits, s_logits, _ = scorer.logits([e.text for e in examples])
    temps = (scorer.meta.temperature_topic, scorer.meta.temperature_sentiment)
    report = report_from_logits(examples, t_logits, s_logits, temps)
    report["model_version"], report["backend"], report["precision"] = scorer.version, backend, precision
    report["n"] = len(examples)
    return report, markdown(report, f"finsent evaluation — {scorer.version} ({backend}, {precision})")


def report_from_logits(dev: list[Example], t_logits, s_logits, temps=(1.0, 1.0)) -> dict:
    y_t = np.array([e.topic for e in dev])
    y_s = np.array([e.sentiment for e in dev])
    t_probs, s_probs = softmax(t_logits, temps[0]), softmax(s_logits, temps[1])
    heads = {"topic": head_report(t_probs, y_t, list(TOPICS)), "sentiment": head_report(s_probs, y_s, list(SENTIMENTS))}
    by_source = {}
    for src in sorted({e.source for e in dev}):
        sel = np.array([e.source == src for e in dev])
        task = "topic" if (y_t[sel] >= 0).any() else "sentiment"
        probs, y = (t_probs, y_t) if task == "topic" else (s_probs, y_s)
        r = head_report(probs[sel], y[sel], list(TOPICS if task == "topic" else SENTIMENTS))
        by_source[src] = {k: r[k] for k in ("n", "accuracy", "macro_f1")}
    return {"heads": heads, "by_source": by_source,
            "selection": (heads["topic"]["macro_f1"] + heads["sentiment"]["macro_f1"]) / 2}
