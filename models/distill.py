"""Distillation (training side): the teacher's soft labels and the loss that pulls the student to them.

A teacher run (models/teacher.py) writes `logits.npz`: a row of (topic, sentiment) logits per
training and dev text, keyed by `text_key(text)`. `soft_labels` lines them up with the student's
training examples; `distill_loss` is the KL term models.training.train_step mixes in with weight
1 - distill_alpha (`finsent train --teacher runs/teacher/logits.npz`). Several `--teacher` files
make an ensemble: their logits are averaged per text. `teacher_sources` reads what trained each
teacher (its teacher.json beside logits.npz), so the student's record and card carry the
teacher's data and licences too.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from models.data import DataError, Example


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def load_soft_labels(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """text key → (topic logits, sentiment logits) from a teacher's logits.npz."""
    z = np.load(Path(path))
    return {k: (t, s) for k, t, s in zip(z["keys"].tolist(), z["topic"], z["sentiment"])}


def distill_loss(t, s, soft_t, soft_s, temperature: float, weights=None):
    """Both heads' KL(teacher || student) at the temperature, scaled by T^2 (Hinton et al.).
    `weights`: optional (topic, sentiment) per-row weights, 0 where a row must not be pulled."""
    loss = 0.0
    for h, (student, teacher) in enumerate(((t, soft_t), (s, soft_s))):
        log_p = torch.log_softmax(teacher.float() / temperature, -1)
        rows = (log_p.exp() * (log_p - torch.log_softmax(student.float() / temperature, -1))).sum(-1)
        w = None if weights is None else weights[h].to(rows.device)
        loss = loss + (rows.mean() if w is None else (rows * w).sum() / len(rows)) * temperature**2
    return loss


def soft_labels(path: str | list[str], train: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits for each training example, in order; every text must have a row.
    Several paths: an ensemble, the mean of the teachers' logits (every teacher needs every text)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    topic, sentiment = [], []
    for p in paths:
        table = load_soft_labels(Path(p))
        missing = [e.text for e in train if text_key(e.text) not in table]
        if missing:
            raise DataError(f"{p}: no teacher logits for {len(missing)} training texts (first: {missing[0][:60]!r}); "
                            "train the teacher on the same data and split")
        rows = [table[text_key(e.text)] for e in train]
        topic.append(np.stack([r[0] for r in rows]))
        sentiment.append(np.stack([r[1] for r in rows]))
    return torch.tensor(np.mean(topic, 0, dtype=np.float32)), torch.tensor(np.mean(sentiment, 0, dtype=np.float32))


def teacher_sources(paths: list[str]) -> list[dict]:
    """The training files of each teacher, from the teacher.json beside its logits.npz; a teacher
    without one is recorded as an unknown source (which allows no commercial use)."""
    out = []
    for p in paths:
        record = Path(p).with_name("teacher.json")
        sources = json.loads(record.read_text()).get("sources", []) if record.exists() else []
        if not sources or not all(isinstance(s, dict) and "licence" in s for s in sources):
            sources = [{"path": str(p), "task": "soft labels", "licence": "unknown", "commercial": False,
                        "licence_source": f"{record} missing or without licences"}]
        out += [dict(s, teacher=str(p)) for s in sources]
    return out
