"""Fine-tune the multi-task model: `finsent train --data-dir ../shared/data --output DIR`.

Steps are small functions: load sources → stratified seeded dev split → tokenise once →
AdamW with linear warm-up and decay → per-epoch dev evaluation → early stopping on the mean
of the two heads' macro-F1 → checkpoint every epoch (resume with --resume) → temperature
calibration on dev → fp16 artifact + model card.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from models.data import Example, SourceSpec, default_sources, label_counts, load_source, stratified_split
from models.labels import SENTIMENTS, TOPICS
from models.evaluate import report_from_logits
from models.metrics import fit_temperature
from models.network import ModelMeta, build_model, load_artifact, load_tokenizer, masked_loss, save_artifact


@dataclass
class TrainConfig:
    output: str
    sources: list[str] = field(default_factory=list)  # TASK:FORMAT:PATH[:MAP]; empty = data_dir defaults
    data_dir: str = "../shared/data"
    encoder: str = "minilm"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 8e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 128
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
    specs = [SourceSpec.parse(s) for s in cfg.sources] or default_sources(Path(cfg.data_dir))
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


def tokenize(tokenizer, examples: list[Example], max_length: int) -> list[list[int]]:
    return tokenizer([e.text for e in examples], truncation=True, max_length=max_length)["input_ids"]


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


def pick_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


class Trainer:
    """Holds the run's state so that each step stays small; `run()` does the whole job."""

    def __init__(self, cfg: TrainConfig):
        self.cfg, self.out = cfg, Path(cfg.output)
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.device)
        self.train, self.dev, self.specs = load_examples(cfg)
        self.model, self.encoder_path = build_model(cfg.encoder, cfg.dropout)
        if cfg.init:
            self.model.load_state_dict(load_artifact(Path(cfg.init))[0].state_dict())
        self.model.to(self.device)
        self.tokenizer = load_tokenizer(self.encoder_path)
        self.soft = soft_labels(cfg.teacher, self.train) if cfg.teacher else None
        self.pad_id = self.tokenizer.pad_token_id
        self.train_ids = tokenize(self.tokenizer, self.train, cfg.max_length)
        self.dev_ids = tokenize(self.tokenizer, self.dev, cfg.max_length)
        w = topic_class_weights(self.train, cfg.topic_weighting)
        self.topic_weight = None if w is None else w.to(self.device)
        self.steps_per_epoch = math.ceil(len(self.train) / cfg.batch_size)
        self.opt, self.sched = make_optimizer(self.model, cfg, self.steps_per_epoch * cfg.epochs)
        self.epoch, self.best, self.bad_epochs, self.history = 0, -1.0, 0, []

    # -- checkpoint / resume -------------------------------------------------------------
    def save_checkpoint(self) -> None:
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                    "epoch": self.epoch, "best": self.best, "bad_epochs": self.bad_epochs, "history": self.history,
                    "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state())},
                   self.out / "checkpoint.pt")

    def load_checkpoint(self) -> None:
        ck = torch.load(self.out / "checkpoint.pt", map_location=self.device, weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.sched.load_state_dict(ck["sched"])
        self.epoch, self.best, self.bad_epochs, self.history = ck["epoch"], ck["best"], ck["bad_epochs"], ck["history"]
        random.setstate(ck["rng"][0]); np.random.set_state(ck["rng"][1]); torch.set_rng_state(ck["rng"][2])

    # -- one epoch -------------------------------------------------------------------------
    def train_epoch(self, progress, task) -> float:
        self.model.train()
        order = np.random.permutation(len(self.train))
        total, seen = 0.0, 0
        for start in range(0, len(order), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            loss = self.step(idx)
            total, seen = total + loss * len(idx), seen + len(idx)
            progress.update(task, advance=1, description=f"epoch {self.epoch + 1} loss {total / seen:.4f}")
        return total / max(seen, 1)

    def step(self, idx) -> float:
        soft = None if self.soft is None else (self.soft[0][idx], self.soft[1][idx])
        loss = train_step(self.model, self.opt, [self.train_ids[i] for i in idx], [self.train[i] for i in idx],
                          self.pad_id, self.device, self.topic_weight, self.cfg.label_smoothing, soft,
                          self.cfg.distill_alpha, self.cfg.distill_temperature, self.cfg.cpu_bf16)
        self.sched.step()
        return loss

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> dict:
        if self.cfg.resume and (self.out / "checkpoint.pt").exists():
            self.load_checkpoint()
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns) as progress:
            while self.epoch < self.cfg.epochs and self.bad_epochs < self.cfg.patience:
                task = progress.add_task(f"epoch {self.epoch + 1}", total=self.steps_per_epoch)
                t0 = time.perf_counter()
                loss = self.train_epoch(progress, task)
                self.end_epoch(loss, time.perf_counter() - t0)
        return self.finish()

    def end_epoch(self, loss: float, seconds: float) -> None:
        rep = dev_report(self.model, self.dev, self.dev_ids, self.pad_id, self.device)
        self.epoch += 1
        self.history.append({"epoch": self.epoch, "train_loss": loss, "seconds": round(seconds, 1),
                             "topic_macro_f1": rep["heads"]["topic"]["macro_f1"],
                             "sentiment_macro_f1": rep["heads"]["sentiment"]["macro_f1"],
                             "by_source": rep["by_source"]})
        if rep["selection"] > self.best:
            self.best, self.bad_epochs = rep["selection"], 0
            torch.save(self.model.state_dict(), self.out / "best.pt")
        else:
            self.bad_epochs += 1
        self.save_checkpoint()

    def finish(self) -> dict:
        self.model.load_state_dict(torch.load(self.out / "best.pt", map_location=self.device))
        t_logits, s_logits = predict_logits(self.model, self.dev_ids, self.pad_id, self.device)
        temps = (fit_temperature(t_logits, np.array([e.topic for e in self.dev])),
                 fit_temperature(s_logits, np.array([e.sentiment for e in self.dev])))
        report = report_from_logits(self.dev, t_logits, s_logits, temps)
        meta = ModelMeta(version=self.cfg.version or version_id(self.cfg), base_encoder=self.encoder_path,
                         max_length=self.cfg.max_length, temperature_topic=temps[0], temperature_sentiment=temps[1])
        save_artifact(self.model, self.tokenizer, meta, self.out)
        write_training_record(self.out, self.cfg, self.specs, self.train, self.dev, self.history, report)
        return report


def soft_labels(path: str, train: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits for each training example, in order; every text must have a row."""
    from models.data import DataError
    from models.teacher import load_soft_labels, text_key

    table = load_soft_labels(Path(path))
    missing = [e.text for e in train if text_key(e.text) not in table]
    if missing:
        raise DataError(f"{path}: no teacher logits for {len(missing)} training texts (first: {missing[0][:60]!r}); "
                        "train the teacher on the same data and split")
    rows = [table[text_key(e.text)] for e in train]
    return (torch.tensor(np.stack([r[0] for r in rows])), torch.tensor(np.stack([r[1] for r in rows])))


def version_id(cfg: TrainConfig) -> str:
    return f"finsent-{Path(cfg.encoder).name or 'minilm'}-{time.strftime('%Y%m%d')}-s{cfg.seed}"


def write_training_record(out: Path, cfg: TrainConfig, specs, train, dev, history, report) -> None:
    record = {"config": asdict(cfg), "sources": [{"task": s.task, "format": s.format, "path": str(s.path),
                                                  "label_map": s.label_map} for s in specs],
              "n_train": len(train), "n_dev": len(dev), "history": history}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "dev_metrics.json").write_text(json.dumps(report, indent=2) + "\n")


def train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).run()
