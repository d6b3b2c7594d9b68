"""The per-entity sentiment head: in torch (the reference backend and the training module) and
in numpy (what serving runs, NumpyHead: no torch import).

`load_entity_model(artifact)` gives the frozen encoder of the artifact + the head saved beside it
(entity_head.safetensors, entity_head.json), which models.runtime.TorchEntityBackend runs.
`NumpyHead.load(artifact)` is the same head on token states the item graph already computed
(models.runtime.Scorer.entity_sentiment). Trained by models/entity_sentiment.py.

Room: shared by serving and training. See models/README.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.entity_inputs import HEAD_FILE, HEAD_META, MAX_DISTANCE, N_BUCKETS, SCORE_THRESHOLD


@dataclass
class HeadConfig:
    hidden: int = 384
    dim: int = 128
    heads: int = 4
    buckets: int = N_BUCKETS
    labels: int = 3
    dropout: float = 0.1
    freeze_cls: bool = False  # keep the item sentiment head's weights: the head only learns where to look
    score_threshold: float = SCORE_THRESHOLD
    max_distance: int = MAX_DISTANCE


def _torch_modules():
    import torch
    from torch import nn

    class EntityHead(nn.Module):
        def __init__(self, cfg: HeadConfig):
            super().__init__()
            self.cfg = cfg
            self.q = nn.Linear(cfg.hidden, cfg.dim)
            self.k = nn.Linear(cfg.hidden, cfg.dim)
            self.bias = nn.Embedding(cfg.buckets, cfg.heads)
            self.drop = nn.Dropout(cfg.dropout)
            self.cls = nn.Linear(cfg.hidden, cfg.labels)  # initialised from the shipped sentiment head
            self.mlp = nn.Sequential(nn.Linear(2 * cfg.hidden, cfg.dim), nn.GELU(), nn.Dropout(cfg.dropout),
                                     nn.Linear(cfg.dim, cfg.labels))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

        def forward(self, hidden, attention_mask, target_mask, distance):
            b, s, _ = hidden.shape
            h, dh = self.cfg.heads, self.cfg.dim // self.cfg.heads
            m = attention_mask.to(hidden.dtype).unsqueeze(-1)
            t = target_mask.to(hidden.dtype).unsqueeze(-1)
            tvec = (hidden * t).sum(1) / t.sum(1).clamp(min=1.0)
            mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            q = self.q(tvec + mean).view(b, h, dh)  # mean keeps a query when the target was truncated away
            k = self.k(hidden).view(b, s, h, dh)
            scores = torch.einsum("bhd,bshd->bhs", q, k) / math.sqrt(dh) + self.bias(distance).permute(0, 2, 1)
            scores = scores.masked_fill(attention_mask.unsqueeze(1) == 0, -1e4)
            # the target's clause, pooled in the encoder's own space and read by the item sentiment head
            pooled = torch.einsum("bhs,bsd->bhd", scores.softmax(-1), hidden).mean(1)
            return self.cls(self.drop(pooled)) + self.mlp(self.drop(torch.cat([tvec, pooled], -1)))

    class EntityModel(nn.Module):
        """Frozen encoder (of the shipped MultiTaskModel) + head: the graph exported to ONNX."""

        def __init__(self, encoder, head):
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, input_ids, attention_mask, target_mask, distance):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.head(hidden, attention_mask, target_mask, distance)

    return EntityHead, EntityModel


def new_head(cfg: HeadConfig | None = None):
    return _torch_modules()[0](cfg or HeadConfig())


def save_head(head, directory: Path, card: dict) -> None:
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(directory / HEAD_FILE))
    (directory / HEAD_META).write_text(json.dumps({"config": asdict(head.cfg), **card}, indent=2) + "\n")



def load_head(directory: Path):
    import torch
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = HeadConfig(**json.loads((directory / HEAD_META).read_text())["config"])
    head = new_head(cfg)
    head.load_state_dict({k: v.to(torch.float32) for k, v in load_file(str(directory / HEAD_FILE)).items()})
    return head.eval()


def load_entity_model(directory: Path, device: str = "cpu", attention: str = "sdpa"):
    from models.network import load_artifact

    model, meta = load_artifact(directory, device=device, attention=attention)
    _, EntityModel = _torch_modules()
    return EntityModel(model.encoder, load_head(directory).to(device)).eval(), meta


class NumpyHead:
    """EntityHead.forward in numpy, for the pairs of ONE text at a time: `logits(hidden, targets,
    buckets)` with hidden (S, H) float32 (that text's token states, no padding), targets and
    buckets (P, S) int (models.entity_inputs.target_features, one row per entity) -> (P, labels).
    Equal to the torch head within float rounding (tests/test_entity_sentiment.py)."""

    def __init__(self, cfg: HeadConfig, weights: dict[str, np.ndarray]):
        self.cfg = cfg
        w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
        self.wq, self.bq, self.wk, self.bk = w["q.weight"].T.copy(), w["q.bias"], w["k.weight"].T.copy(), w["k.bias"]
        self.bias = w["bias.weight"]  # (buckets, heads)
        self.wc, self.bc = w["cls.weight"].T.copy(), w["cls.bias"]
        self.w0, self.b0 = w["mlp.0.weight"].T.copy(), w["mlp.0.bias"]
        self.w3, self.b3 = w["mlp.3.weight"].T.copy(), w["mlp.3.bias"]

    @classmethod
    def load(cls, directory: Path) -> NumpyHead:
        from safetensors.numpy import load_file

        directory = Path(directory)
        cfg = HeadConfig(**json.loads((directory / HEAD_META).read_text())["config"])
        return cls(cfg, load_file(str(directory / HEAD_FILE)))

    def logits(self, hidden: np.ndarray, targets: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        h, dh = self.cfg.heads, self.cfg.dim // self.cfg.heads
        t = targets.astype(np.float32)
        tvec = (t @ hidden) / np.maximum(t.sum(1, keepdims=True), 1.0)  # (P, H)
        q = ((tvec + hidden.mean(0)) @ self.wq + self.bq).reshape(-1, h, dh)
        # q.k with k = hidden @ Wk + bk, computed as hidden @ (Wk q) + q.bk: the query is taken back
        # to the states' width (P x heads columns) instead of projecting every token (S x dim), a
        # product small enough that BLAS runs it on one thread (its threads cost more than the work)
        qk = np.einsum("dhe,phe->phd", self.wk.reshape(-1, h, dh), q)
        scores = np.einsum("phd,sd->phs", qk, hidden) + np.einsum("phe,he->ph", q, self.bk.reshape(h, dh))[..., None]
        scores = scores / math.sqrt(dh) + self.bias[buckets].transpose(0, 2, 1)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        pooled = np.einsum("phs,sd->pd", scores, hidden) / h  # the mean over heads of each head's pooling
        x = np.concatenate([tvec, pooled], 1) @ self.w0 + self.b0
        return pooled @ self.wc + self.bc + _gelu(x) @ self.w3 + self.b3


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU() (the exact, erf form); erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)
