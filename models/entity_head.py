"""The per-entity sentiment head in torch (the reference backend and the training module).

`load_entity_model(artifact)` gives the frozen encoder of the artifact + the head saved beside it
(entity_head.safetensors, entity_head.json): the graph models.export.export_entity_onnx exports
to entity.onnx and models.runtime.TorchEntityBackend runs. Trained by models/entity_sentiment.py.

Room: shared by serving and training. See models/README.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

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
