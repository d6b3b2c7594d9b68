"""Score a batch of texts with a trained artifact, behind one small interface.

    scorer = Scorer.from_artifact(DEFAULT_ARTIFACT)          # ONNX Runtime, CPU, int8 if present
    scorer.predict(["$AAPL guides lower", "Fed holds rates"]) # -> list[Prediction], input order

Backends share one contract (Polygraphy's runner shape): `infer(input_ids, attention_mask) ->
(topic_logits, sentiment_logits)` on int64 numpy arrays. `onnx` (ONNX Runtime) is the CPU
default and imports neither torch nor transformers; `torch` is the reference (fp16 on CUDA);
`tensorrt` runs an engine built by `finsent export --tensorrt` (GPU only).

Batching: tokenise the whole call once with the fast tokenizer, sort by length, cut into
chunks of at most `max_batch` texts whose padding stays under `MAX_PAD_WASTE` of the real
tokens, pad each chunk only to its own longest text (a tweet is never padded to 512).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from models.metrics import softmax

DEFAULT_ARTIFACT = Path(__file__).parent / "artifacts" / "finsent-minilm-v1"
BACKENDS = ("onnx", "torch", "tensorrt")
MAX_PAD_WASTE = 0.15  # padded tokens allowed per chunk, as a share of its real tokens


class InvalidText(ValueError):
    """Some inputs cannot be scored; `.errors` maps input index -> reason."""

    def __init__(self, errors: dict[int, str]):
        self.errors = errors
        first = ", ".join(f"#{i}: {r}" for i, r in list(errors.items())[:5])
        super().__init__(f"{len(errors)} text(s) cannot be scored ({first})")


@dataclass(frozen=True)
class Prediction:
    topic: str
    topic_confidence: float
    topic_probs: dict[str, float]
    sentiment: str
    sentiment_probs: dict[str, float]
    score: float  # p(positive) - p(negative), in [-1, 1]
    model_version: str
    truncated: bool = False

    def to_dict(self) -> dict:
        return {"topic": self.topic, "topic_confidence": self.topic_confidence, "topic_probs": self.topic_probs,
                "sentiment": self.sentiment, "sentiment_probs": self.sentiment_probs, "score": self.score,
                "model_version": self.model_version, "truncated": self.truncated}


class Backend(Protocol):
    name: str

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Meta:
    """The runtime's view of finsent.json (kept free of torch)."""

    version: str
    topics: tuple[str, ...]
    sentiments: tuple[str, ...]
    max_length: int
    temperature_topic: float = 1.0
    temperature_sentiment: float = 1.0

    @classmethod
    def load(cls, directory: Path) -> Meta:
        import json

        raw = json.loads((Path(directory) / "finsent.json").read_text())
        return cls(raw["version"], tuple(raw["topics"]), tuple(raw["sentiments"]), int(raw["max_length"]),
                   float(raw.get("temperature_topic", 1.0)), float(raw.get("temperature_sentiment", 1.0)))


def onnx_path(directory: Path, precision: str) -> Path:
    return Path(directory) / ("model.int8.onnx" if precision == "int8" else "model.onnx")


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: Path, threads: int = 0, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist; build it with `finsent export`")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=list(providers or ["CPUExecutionProvider"]))
        self.path = Path(path)

    def infer(self, input_ids, attention_mask):
        topic, sentiment = self.session.run(["topic_logits", "sentiment_logits"],
                                            {"input_ids": input_ids, "attention_mask": attention_mask})
        return topic, sentiment


class TorchBackend:
    """The reference: the PyTorch module itself (fp32 on CPU, fp16 on CUDA by default)."""

    name = "torch"

    def __init__(self, directory: Path, device: str = "cpu", fp16: bool | None = None):
        import torch

        from models.network import load_artifact

        fp16 = device.startswith("cuda") if fp16 is None else fp16
        self.torch, self.device = torch, device
        self.model, _ = load_artifact(directory, device=device, dtype=torch.float16 if fp16 else torch.float32)

    def infer(self, input_ids, attention_mask):
        torch = self.torch
        with torch.inference_mode():
            t, s = self.model(torch.from_numpy(input_ids).to(self.device), torch.from_numpy(attention_mask).to(self.device))
        return t.float().cpu().numpy(), s.float().cpu().numpy()


class Tokenizer:
    """The fast (Rust) tokenizer saved in the artifact; truncates, never pads."""

    def __init__(self, directory: Path, max_length: int):
        from tokenizers import Tokenizer as _Tok

        self.tok = _Tok.from_file(str(Path(directory) / "tokenizer" / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length)
        self.pad_id = self.tok.token_to_id("[PAD]") or 0

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        encs = self.tok.encode_batch(texts)
        return [e.ids for e in encs], [bool(e.overflowing) for e in encs]


def validate_texts(texts: Sequence[object]) -> dict[int, str]:
    errors = {}
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            errors[i] = f"not a string ({type(t).__name__})"
        elif not t.strip():
            errors[i] = "empty text"
    return errors


def pad_chunk(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return input_ids, mask


def length_buckets(lengths: list[int], max_batch: int) -> list[list[int]]:
    """Indices sorted by length, cut where a chunk is full or padding would exceed MAX_PAD_WASTE."""
    chunks, chunk, real = [], [], 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[i]  # the longest so far, since sorted
        if chunk and (len(chunk) == max_batch or (len(chunk) + 1) * n > (real + n) * (1 + MAX_PAD_WASTE)):
            chunks.append(chunk)
            chunk, real = [], 0
        chunk.append(i)
        real += n
    return chunks + ([chunk] if chunk else [])


class Scorer:
    """Tokenise once, length-bucket, one backend call per chunk, predictions in input order."""

    def __init__(self, backend: Backend, tokenizer: Tokenizer, meta: Meta, max_batch: int = 64):
        self.backend, self.tokenizer, self.meta, self.max_batch = backend, tokenizer, meta, max_batch

    @property
    def version(self) -> str:
        return self.meta.version

    @classmethod
    def from_artifact(cls, directory: Path | str = DEFAULT_ARTIFACT, backend: str = "onnx", precision: str = "auto",
                      device: str = "cpu", max_batch: int = 64, threads: int = 0) -> Scorer:
        directory = Path(directory)
        meta = Meta.load(directory)
        return cls(make_backend(directory, backend, precision, device, threads), Tokenizer(directory, meta.max_length),
                   meta, max_batch)

    def logits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        errors = validate_texts(texts)
        if errors:
            raise InvalidText(errors)
        ids, truncated = self.tokenizer.encode(list(texts))
        topic = np.zeros((len(ids), len(self.meta.topics)), np.float32)
        sent = np.zeros((len(ids), len(self.meta.sentiments)), np.float32)
        for chunk in length_buckets([len(x) for x in ids], self.max_batch):
            topic[chunk], sent[chunk] = self.backend.infer(*pad_chunk([ids[i] for i in chunk], self.tokenizer.pad_id))
        return topic, sent, truncated

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        t, s, truncated = self.logits(texts)
        return softmax(t, self.meta.temperature_topic), softmax(s, self.meta.temperature_sentiment), truncated

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not len(texts):
            return []
        t_probs, s_probs, truncated = self.probabilities(texts)
        return [self._prediction(t_probs[i], s_probs[i], truncated[i]) for i in range(len(texts))]

    def _prediction(self, tp: np.ndarray, sp: np.ndarray, truncated: bool) -> Prediction:
        m = self.meta
        s_probs = {k: round(float(v), 6) for k, v in zip(m.sentiments, sp)}
        ti = int(tp.argmax())
        return Prediction(
            topic=m.topics[ti], topic_confidence=round(float(tp[ti]), 6),
            topic_probs={k: round(float(v), 6) for k, v in zip(m.topics, tp)},
            sentiment=m.sentiments[int(sp.argmax())], sentiment_probs=s_probs,
            score=round(s_probs.get("positive", 0.0) - s_probs.get("negative", 0.0), 6),
            model_version=m.version, truncated=truncated)


def make_backend(directory: Path, backend: str, precision: str = "auto", device: str = "cpu", threads: int = 0) -> Backend:
    if backend == "onnx":
        if precision == "auto":
            precision = "int8" if onnx_path(directory, "int8").exists() else "fp32"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
        return OnnxBackend(onnx_path(directory, precision), threads=threads, providers=providers)
    if backend == "torch":
        return TorchBackend(directory, device=device, fp16=None if precision == "auto" else precision == "fp16")
    if backend == "tensorrt":
        from models.tensorrt import TensorRTBackend

        return TensorRTBackend.from_artifact(directory)
    raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")

