"""Fine-tune the multi-task model (training side): `finsent train --data-dir DIR --output DIR`
(the data directory defaults to FINSENT_DATA_DIR, core.settings.Settings.data_dir).

Steps are small functions: load sources → stratified seeded dev split → tokenise once →
AdamW with linear warm-up and decay → per-epoch dev evaluation → early stopping on the mean
of the two heads' macro-F1 → checkpoint every epoch (resume with --resume) → temperature
calibration on dev → fp16 artifact + model card. The loop's helpers (config, seeding, device,
batching, one step) are in models/training.py, the teacher's soft labels in models/distill.py.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from models.data import allowed_use
from models.distill import distill_loss, soft_labels, teacher_sources  # noqa: F401  (re-exported: tests, older callers)
from models.evaluate import report_from_logits
from models.metrics import fit_temperature
from models.network import ModelMeta, build_model, load_artifact, load_tokenizer, save_artifact
from models.training import (TrainConfig, autocast, batches_by_length, collate, dev_report,  # noqa: F401
                             load_examples, make_optimizer, pick_device, predict_logits, seed_everything,
                             teacher_paths, tokenize, topic_class_weights, train_step)


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
        self.teachers = teacher_paths(cfg)
        self.soft = soft_labels(self.teachers, self.train) if self.teachers else None
        self.pad_id = self.tokenizer.pad_token_id
        self.train_ids = tokenize(self.tokenizer, self.train, cfg.max_length, cfg.mask_urls)
        self.dev_ids = tokenize(self.tokenizer, self.dev, cfg.max_length, cfg.mask_urls)
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
                         max_length=self.cfg.max_length, temperature_topic=temps[0], temperature_sentiment=temps[1],
                         mask_urls=self.cfg.mask_urls)
        save_artifact(self.model, self.tokenizer, meta, self.out)
        write_training_record(self.out, self.cfg, self.specs, self.train, self.dev, self.history, report,
                              teacher_sources(self.teachers))
        return report


def version_id(cfg: TrainConfig) -> str:
    return f"finsent-{Path(cfg.encoder).name or 'minilm'}-{time.strftime('%Y%m%d')}-s{cfg.seed}"


def write_training_record(out: Path, cfg: TrainConfig, specs, train, dev, history, report,
                          teacher_records: list[dict] = ()) -> None:
    """training.json: the config, every file with its licence and hash (the teacher's too) and the
    use those licences allow; dev_metrics.json: the dev report."""
    sources = [s.record() for s in specs]
    record = {"config": asdict(cfg), "sources": sources, "teacher_sources": list(teacher_records),
              "use": allowed_use(sources + list(teacher_records)),
              "n_train": len(train), "n_dev": len(dev), "history": history}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "dev_metrics.json").write_text(json.dumps(report, indent=2) + "\n")


def train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).run()
