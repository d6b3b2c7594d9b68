"""A trained teacher's sentiment accuracy on PhraseBank files (out of domain for the commercial
teacher): tells whether a student's gap there is its teacher's. fp32 PyTorch, batches of 64.

    python scripts/teacher_eval.py --teacher var/v3-commercial/teacher-s13 [--encoder var/teacher/all-mpnet-base-v2]
        [--data-dir ../shared/data] [--files Sentences_50Agree.txt,Sentences_AllAgree.txt]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.artifact import SENTIMENTS  # noqa: E402
from models.data import SourceSpec, default_data_dir, load_source  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", type=Path, required=True, help="a `finsent teacher train` output (its best.pt)")
    ap.add_argument("--encoder", default="var/teacher/all-mpnet-base-v2")
    ap.add_argument("--data-dir", type=Path, default=Path(default_data_dir()))
    ap.add_argument("--files", default="Sentences_50Agree.txt,Sentences_AllAgree.txt")
    a = ap.parse_args()

    import torch
    from rich.progress import Progress
    from transformers import AutoModel

    from models.network import load_tokenizer
    from models.teacher import Teacher

    tok = load_tokenizer(a.encoder)
    model = Teacher(AutoModel.from_pretrained(a.encoder, dtype=torch.float32, add_pooling_layer=False))
    model.load_state_dict(torch.load(a.teacher / "best.pt", map_location="cpu"))
    model.eval()
    for name in a.files.split(","):
        ex = load_source(SourceSpec("sentiment", "phrasebank", a.data_dir / "financial_phrasebank" / name))
        pred: list[int] = []
        with Progress() as progress, torch.inference_mode():
            task = progress.add_task(name, total=len(ex))
            for i in range(0, len(ex), 64):
                b = tok([e.text for e in ex[i:i + 64]], truncation=True, max_length=128, padding=True,
                        return_tensors="pt")
                pred += model(b["input_ids"], b["attention_mask"])[1].argmax(-1).tolist()
                progress.advance(task, len(ex[i:i + 64]))
        y, p = np.array([e.sentiment for e in ex]), np.array(pred)
        recall = ", ".join(f"{c} {float((p[y == i] == i).mean()):.3f}" for i, c in enumerate(SENTIMENTS))
        print(f"{name}: n={len(ex)} accuracy={float((y == p).mean()):.4f} (recall: {recall})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
