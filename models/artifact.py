"""A trained artifact as serving sees it, free of torch and numpy (serving side).

    meta = Meta.load(resolve_artifact("models/artifacts"))   # follows a `current` pointer
    raw = read_meta_file(directory)                           # finsent.json as a dict

An artifact is a directory holding `finsent.json` (version, labels, max length, temperatures,
int8 recheck margin, whether web addresses are masked: `encoder_text`), the fp16 weights, the
encoder config and the tokenizer; `finsent export` adds model.onnx / model.int8.onnx (logits and token states) beside them. This module is the one reader of
finsent.json (`read_meta_file`) and its one writer (`write_meta_file`), and it holds
what every serving module shares: the default artifact, path lookup, the scored row's limits,
the Prediction contract and the errors the runtime raises.

Room: serving (loads a built artifact and scores; torch only for the reference backend). See models/README.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

DEFAULT_ARTIFACT = Path(__file__).parent / "artifacts" / "finsent-minilm-v2"
META_FILE = "finsent.json"
# What a scored row can hold (scored_event in core/db.py; tests/test_model_fits.py keeps them equal):
# a model whose version or labels do not fit is refused when it is loaded or swapped in, instead of
# scoring every message into a row Postgres refuses.
VERSION_MAX_CHARS = 64  # scored_event.model_version VARCHAR(64)
TOPIC_MAX_CHARS = 64  # scored_event.topic VARCHAR(64), alert.key VARCHAR(64)
SENTIMENTS = ("negative", "neutral", "positive")  # the p_negative/p_neutral/p_positive columns


class BackendUnavailable(ValueError):
    """A backend/precision/device combination this runtime cannot run here (a configuration error)."""


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


class EntitySentiment(NamedTuple):
    """Sentiment of one entity in one item: (sentiment, score, probs); score = p(pos) - p(neg).
    `source` says where it came from: 'entity_head' (the target-aware head) or 'item' (the item's
    own sentiment, for an item that names a single entity)."""

    sentiment: str
    score: float
    probs: dict[str, float]
    source: str = "entity_head"


def read_meta_file(directory: Path | str) -> dict:
    """finsent.json of an artifact directory, as written (the one place it is read)."""
    return json.loads((Path(directory) / META_FILE).read_text())


def write_meta_file(directory: Path | str, meta: dict) -> None:
    """Write finsent.json (training writes it whole; export updates int8_recheck_margin)."""
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


@dataclass(frozen=True)
class Meta:
    """The runtime's view of finsent.json (kept free of torch)."""

    version: str
    topics: tuple[str, ...]
    sentiments: tuple[str, ...]
    max_length: int
    temperature_topic: float = 1.0
    temperature_sentiment: float = 1.0
    int8_recheck_margin: float = 0.0
    mask_urls: bool = True  # encoder_text: the encoder reads a web address as its scheme word only

    @classmethod
    def load(cls, directory: Path) -> Meta:
        raw = read_meta_file(directory)
        return cls(raw["version"], tuple(raw["topics"]), tuple(raw["sentiments"]), int(raw["max_length"]),
                   float(raw.get("temperature_topic", 1.0)), float(raw.get("temperature_sentiment", 1.0)),
                   float(raw.get("int8_recheck_margin", 0.0)), bool(raw.get("mask_urls", True)))


def onnx_path(directory: Path, precision: str) -> Path:
    return Path(directory) / ("model.int8.onnx" if precision == "int8" else "model.onnx")


def resolve_artifact(path: Path | str) -> Path:
    """An artifact directory (it holds finsent.json) as it is; a models directory with a `current`
    pointer (a symlink to an artifact directory, or a text file holding its name or path) → what
    `current` names now. Re-pointing `current` is how a running worker is given a new model."""
    p = Path(path)
    cur = p / "current"
    if (p / META_FILE).exists() or not (cur.exists() or cur.is_symlink()):
        return p
    if cur.is_symlink() or cur.is_dir():
        return cur.resolve()
    name = cur.read_text().strip()
    if not name:
        raise FileNotFoundError(f"{cur} is empty: it should name an artifact directory")
    return Path(name) if Path(name).is_absolute() else p / name


def validate_texts(texts: Sequence[object]) -> dict[int, str]:
    errors = {}
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            errors[i] = f"not a string ({type(t).__name__})"
        elif not t.strip():
            errors[i] = "empty text"
    return errors


_URL = re.compile(r"\b(https?)://\S+", re.IGNORECASE)


def encoder_text(text: str) -> str:
    """What the encoder reads of a text: every web address cut to its scheme word ("https") and the
    rest of it blanked, so the text keeps its length and character offsets into it (entity spans,
    explanations) stay true. A shortened link ("https://t.co/fkjejypxb9") is 14 word pieces of
    noise; 63 % of the benchmark mix's texts carry one or two, and they made a text 37 tokens long
    on average instead of 26 (docs/model.md, "Web addresses"). Training and serving call this
    alike, where the artifact's `mask_urls` says so (every artifact unless its finsent.json says
    false)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: m.group(1) + " " * (m.end() - m.end(1)), text)


def storage_problem(meta: Meta) -> str | None:
    """Why rows scored by this model could not be stored, or None."""
    if not meta.version or len(meta.version) > VERSION_MAX_CHARS:
        return (f"version is {len(meta.version)} characters; scored_event.model_version holds 1 to "
                f"{VERSION_MAX_CHARS}")
    if sorted(meta.sentiments) != sorted(SENTIMENTS):
        return f"sentiment labels {list(meta.sentiments)} are not {list(SENTIMENTS)}"
    bad = [t for t in meta.topics if not t or len(t) > TOPIC_MAX_CHARS]
    if bad or len(set(meta.topics)) != len(meta.topics):
        return (f"topic labels must be distinct and 1 to {TOPIC_MAX_CHARS} characters "
                f"(bad: {bad[:3] or 'duplicates'})")
    return None
