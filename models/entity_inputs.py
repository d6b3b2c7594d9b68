"""Inputs of the per-entity sentiment head, free of torch (serving and training share them).

`encode_pairs` turns (text, entity character spans) into token ids, a target mask and, per token,
a bucket of its signed distance to the target x the clause boundaries crossed (target_features);
`pad_pairs` pads a chunk for the torch reference. models.runtime.Scorer.entity_sentiment runs
the head (models.entity_head.NumpyHead) on the item graph's token states; models/entity_head.py
also holds the torch head, models/entity_sentiment.py trains it.

Room: shared by serving and training. See models/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

LABELS = ("negative", "neutral", "positive")
SCORE_THRESHOLD = 0.1  # score < -0.1 negative, > 0.1 positive, else neutral (FiQA, SemEval)
MAX_DISTANCE = 12  # distance buckets: -12..12 (clipped), x 3 for boundaries crossed, plus one for padding
N_BUCKETS = (2 * MAX_DISTANCE + 1) * 3 + 1
PAD_BUCKET = N_BUCKETS - 1
HEAD_FILE = "entity_head.safetensors"
HEAD_META = "entity_head.json"
# The item graph (model.onnx, model.int8.onnx) also outputs the encoder's last hidden states under
# this name; the head reads them (models.entity_head.NumpyHead), so an item's encoder runs once
# however many entities it names. entity.onnx / entity.int8.onnx (the encoder again, per pair) are
# no longer built; `finsent export` removes them (STALE_FILES).
HIDDEN_OUTPUT = "last_hidden_state"
STALE_FILES = ("entity.onnx", "entity.int8.onnx")
# An int8 item graph gives int8-derived states; pairs whose head reading on them has a top-2
# probability margin under this are read again on fp32 states (models.runtime.Scorer.entity_sentiment).
# `python bench/entities.py --only int8` (1,286 pairs of the 413 multi-entity items in 6,000 texts of
# the bench mix): the head on int8 states alone agreed with the head on fp32 states on 95.9 % of
# pairs; rereading a margin under 0.15 / 0.2 (11.8 % / 14.6 % of pairs) agreed on 99.61 % / 99.84 %.
# 0.2 keeps room above the 99.5 % target (dynamic quantisation scales each batch by its own range,
# so agreement moves with the batch mix).
INT8_RECHECK_MARGIN = 0.2
ONNX_ATOL = 1e-3  # max |p_onnx - p_torch|, same tolerance as the item graph (models.export.FP32_ATOL)


def has_head(directory: Path) -> bool:
    return (Path(directory) / HEAD_FILE).exists() and (Path(directory) / HEAD_META).exists()


# ----------------------------------------------------------------------------------------------
# inputs: target mask and distance buckets from character spans (shared by training and runtime)


BOUNDARY_WORDS = frozenset({"while", "but", "whereas", "as", "and", "though", "although", "yet", "meanwhile"})
BOUNDARY_CHARS = frozenset(",;.|!?:-\u2013\u2014")
MAX_CROSSED = 2  # boundaries crossed between a token and the target: 0, 1, 2 or more


def is_boundary(piece: str) -> bool:
    """A token that may end a clause: punctuation or a conjunction (while, but, as, ...)."""
    piece = piece.strip()
    return bool(piece) and (all(c in BOUNDARY_CHARS for c in piece) or piece.lower() in BOUNDARY_WORDS)


def boundary_flags(offsets: Sequence[tuple[int, int]], length: int, text: str) -> np.ndarray:
    """1 for each of the first `length` tokens that may end a clause (is_boundary on its text)."""
    return np.array([1 if b > a and is_boundary(text[a:b]) else 0 for a, b in offsets[:length]], np.int64)


def target_features(offsets: Sequence[tuple[int, int]], spans: Sequence[Sequence[int]], length: int,
                    text: str = "", boundaries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(target_mask, position bucket) for one tokenised text. A token is a target token when its
    character range overlaps a span; special tokens have offsets (0, 0) and never are. The bucket
    of a token combines its signed distance to the nearest target token (clipped to +-MAX_DISTANCE)
    and how many clause boundaries (is_boundary, read from `text`, or `boundaries` given:
    boundary_flags, computed once for several entities of one text) lie between them (0..MAX_CROSSED).
    With no target token (the span was truncated away), every token gets the farthest bucket."""
    width = 2 * MAX_DISTANCE + 1
    offs = np.asarray(offsets[:length], np.int64).reshape(-1, 2)
    a, b = offs[:, 0], offs[:, 1]
    sp = np.asarray([tuple(x) for x in spans], np.int64).reshape(-1, 2)
    mask = ((b > a) & ((a[:, None] < sp[None, :, 1]) & (sp[None, :, 0] < b[:, None])).any(1)).astype(np.int64)
    if boundaries is None:
        boundaries = boundary_flags(offsets, length, text) if text else np.zeros(length, np.int64)
    bound = np.where(mask > 0, 0, boundaries)  # a target token is never a boundary
    pos = np.flatnonzero(mask)
    if not len(pos):
        return mask, np.full(length, width * (MAX_CROSSED + 1) - 1, np.int64)
    idx = np.arange(length)
    diff = idx[:, None] - pos[None, :]
    near = np.abs(diff).argmin(1)
    nearest = diff[idx, near]
    cb = np.concatenate([[0], np.cumsum(bound)])  # cb[i] = boundaries before token i
    t = pos[near]
    crossed = np.where(nearest > 0, cb[idx] - cb[t + 1], np.where(nearest < 0, cb[t] - cb[idx + 1], 0))
    crossed = np.clip(crossed, 0, MAX_CROSSED)
    return mask, (np.clip(nearest, -MAX_DISTANCE, MAX_DISTANCE) + MAX_DISTANCE + width * crossed).astype(np.int64)


def encode_pairs(tokenizer, texts: Sequence[str], spans: Sequence[Sequence[Sequence[int]]], max_length: int):
    """Token ids, target masks and distance buckets per (text, spans), unpadded lists. `tokenizer`
    gives `encodings(texts)` as models.runtime.Tokenizer does (web addresses masked as the item
    pass masks them), so the ids are the item pass's."""
    encs = tokenizer.encodings(list(texts))
    out = []
    for enc, sp, text in zip(encs, spans, texts):
        ids = enc.ids[:max_length]
        m, d = target_features(enc.offsets, [tuple(s) for s in sp], len(ids), text)
        out.append((ids, m, d))
    return out


def pad_pairs(rows, pad_id: int) -> dict[str, np.ndarray]:
    width = max(len(r[0]) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int64)
    att = np.zeros((len(rows), width), np.int64)
    tm = np.zeros((len(rows), width), np.int64)
    dist = np.full((len(rows), width), PAD_BUCKET, np.int64)
    for i, (x, m, d) in enumerate(rows):
        ids[i, :len(x)], att[i, :len(x)], tm[i, :len(x)], dist[i, :len(x)] = x, 1, m, d
    return {"input_ids": ids, "attention_mask": att, "target_mask": tm, "distance": dist}
