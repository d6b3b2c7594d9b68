"""The v2 model card: v1, the teacher and v2 side by side on the same dev split.

    python -m models.card --v1 models/artifacts/finsent-minilm-v1 --v2 DIR --teacher RUN/teacher

Every number is measured here, through the runtime (ONNX fp32 graph and the int8 path as
shipped), on the dev split in the artifact's training.json; PhraseBank all-agree is the part of
the 50Agree dev split whose sentences all annotators agreed on (AllAgree ⊂ 50Agree, so a
separate all-agree split would overlap the training data).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.data import Example, read_rows
from models.evaluate import dev_examples
from models.runtime import Scorer

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
    from models.teacher import load_soft_labels, text_key

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--v1", type=Path, required=True)
    ap.add_argument("--v2", type=Path, required=True)
    ap.add_argument("--teacher", type=Path)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()
    dev = dev_examples(args.v2, args.data_dir, [])
    parts = slices(dev, args.data_dir)
    v1, v2 = measure(args.v1, dev, parts), measure(args.v2, dev, parts)
    teacher = teacher_numbers(args.teacher, dev, parts) if args.teacher else None
    md = table(v1, teacher, v2, parts)
    (args.v2 / "comparison.json").write_text(json.dumps({"v1": v1, "teacher": teacher, "v2": v2}, indent=2) + "\n")
    (args.v2 / "comparison.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
