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
    from rich.console import Console
    from transformers import AutoModel

    from models.network import load_tokenizer
    from models.teacher import Teacher
    from models.training import predict_logits

    tok = load_tokenizer(a.encoder)
    model = Teacher(AutoModel.from_pretrained(a.encoder, dtype=torch.float32, add_pooling_layer=False))
    model.load_state_dict(torch.load(a.teacher / "best.pt", map_location="cpu"))
    console = Console()
    for name in a.files.split(","):
        ex = load_source(SourceSpec("sentiment", "phrasebank", a.data_dir / "financial_phrasebank" / name))
        ids = tok([e.text for e in ex], truncation=True, max_length=128)["input_ids"]
        with console.status(f"{name}: {len(ex):,} sentences through the teacher (fp32, CPU)"):
            p = predict_logits(model, ids, tok.pad_token_id, torch.device("cpu"), batch_size=64)[1].argmax(-1)
        y = np.array([e.sentiment for e in ex])
        recall = ", ".join(f"{c} {float((p[y == i] == i).mean()):.3f}" for i, c in enumerate(SENTIMENTS))
        console.print(f"{name}: n={len(ex)} accuracy={float((y == p).mean()):.4f} (recall: {recall})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
