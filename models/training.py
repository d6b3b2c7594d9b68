"""Shared pieces of the training loops (training side): the student's TrainConfig, seeding, device
choice, loading and splitting the sources, tokenising, length-sorted batches, one optimiser step.

Used by models/train.py (the student), models/teacher.py (the teacher) and models/feedback.py
(fine-tuning on corrections); nothing here imports any of them.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.artifact import encoder_text
from models.data import (Example, SourceSpec, default_data_dir, label_counts, load_source, selection_sources,
                         stratified_split)
from models.distill import distill_loss
from models.evaluate import report_from_logits
from models.labels import SENTIMENTS, TOPICS
from models.network import masked_loss


@dataclass
class TrainConfig:
    output: str
    sources: list[str] = field(default_factory=list)  # TASK:FORMAT:PATH[:MAP[:LICENCE]]; empty = `data` under data_dir
    data_dir: str = field(default_factory=default_data_dir)
    data: str = "commercial"  # models.data.SELECTIONS: commercial (MIT Twitter sets) | nc (+ PhraseBank 50Agree)
    encoder: str = "minilm"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 8e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 128
    mask_urls: bool = True  # read web addresses as their scheme word (models.artifact.encoder_text), as served
    dropout: float = 0.1
    dev_fraction: float = 0.1
    seed: int = 13
    patience: int = 2
    topic_weighting: str = "sqrt_inv"  # none | sqrt_inv | inv
    label_smoothing: float = 0.0
    limit: int = 0  # >0: use only this many training examples (smoke runs)
    device: str = "auto"
    resume: bool = False
    version: str = ""
    # distillation (models.teacher): the teacher's logits.npz; every training text needs its row
    teacher: str = ""
    teachers: list[str] = field(default_factory=list)  # more logits.npz: an ensemble, their logits averaged
    distill_alpha: float = 0.5  # weight of the hard-label loss; 1 - alpha goes to the soft labels
    distill_temperature: float = 2.0
    init: str = ""  # start from this artifact's weights instead of the bare encoder
    cpu_bf16: bool = False  # bf16 autocast for training steps on a CPU (about 3x fp32 where supported)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def load_examples(cfg: TrainConfig) -> tuple[list[Example], list[Example], list[SourceSpec]]:
    specs = [SourceSpec.parse(s) for s in cfg.sources] or selection_sources(Path(cfg.data_dir), cfg.data)
    train, dev = [], []
    for spec in specs:
        t, d = stratified_split(load_source(spec), cfg.dev_fraction, cfg.seed)
        train += t
        dev += d
    random.Random(cfg.seed).shuffle(train)
    if cfg.limit:
        train = train[: cfg.limit]
    return train, dev, specs


def topic_class_weights(train: list[Example], mode: str) -> torch.Tensor | None:
    """Re-weight the topic loss against the heavy imbalance (IPO 44 … Company News 3,545)."""
    if mode == "none":
        return None
    counts = label_counts(train, "topic")
    n = np.array([max(counts.get(i, 0), 1) for i in range(len(TOPICS))], dtype=np.float64)
    w = (n.sum() / n) ** (0.5 if mode == "sqrt_inv" else 1.0)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def tokenize(tokenizer, examples: list[Example], max_length: int, mask_urls: bool = True) -> list[list[int]]:
    """Token ids of what the encoder reads of each text: as the runtime's Tokenizer gives them."""
    texts = [encoder_text(e.text) if mask_urls else e.text for e in examples]
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def collate(ids: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return input_ids.to(device), mask.to(device)


def batches_by_length(n: int, lengths: list[int], batch_size: int):
    order = sorted(range(n), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def predict_logits(model, ids: list[list[int]], pad_id: int, device, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    topic = np.zeros((len(ids), len(TOPICS)), np.float32)
    sent = np.zeros((len(ids), len(SENTIMENTS)), np.float32)
    for idx in batches_by_length(len(ids), [len(x) for x in ids], batch_size):
        with autocast(device):
            t, s = model(*collate([ids[i] for i in idx], pad_id, device))
        topic[idx], sent[idx] = t.float().cpu().numpy(), s.float().cpu().numpy()
    return topic, sent


def autocast(device, cpu_bf16: bool = False):
    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16)


def dev_report(model, dev: list[Example], dev_ids, pad_id, device, temps=(1.0, 1.0)) -> dict:
    t_logits, s_logits = predict_logits(model, dev_ids, pad_id, device)
    return report_from_logits(dev, t_logits, s_logits, temps)


def train_step(model, opt, ids: list[list[int]], examples: list[Example], pad_id: int, device,
               topic_weight=None, smoothing: float = 0.0, soft=None, alpha: float = 1.0,
               temperature: float = 2.0, cpu_bf16: bool = False, soft_weights=None) -> float:
    """One optimiser step on a batch (both heads, unlabelled heads masked); returns the loss.
    `soft`: the teacher's (topic, sentiment) logits for the batch, mixed in with weight 1 - alpha."""
    input_ids, mask = collate(ids, pad_id, device)
    y_t = torch.tensor([e.topic for e in examples], device=device)
    y_s = torch.tensor([e.sentiment for e in examples], device=device)
    with autocast(device, cpu_bf16):
        t, s = model(input_ids, mask)
    loss = masked_loss(t, s, y_t, y_s, topic_weight, smoothing)
    if soft is not None:
        loss = alpha * loss + (1 - alpha) * distill_loss(t, s, soft[0].to(device), soft[1].to(device), temperature,
                                                         soft_weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def make_optimizer(model, cfg: TrainConfig, steps: int):
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warm = max(1, int(steps * cfg.warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    return opt, sched


def teacher_paths(cfg: TrainConfig) -> list[str]:
    return ([cfg.teacher] if cfg.teacher else []) + list(cfg.teachers)


def pick_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


