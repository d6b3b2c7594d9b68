"""Why the model said what it said: per-word attributions by occlusion.

Each word of the text (a run of sub-word tokens from the tokenizer's word ids) is replaced by
[MASK] in turn, and the change in the model's output is that word's attribution:

- `sentiment`: how much the word moves the signed score, P(positive) − P(negative): a clearly
  negative word has a large negative value, a positive word a positive one;
- `topic`: how much it supports the predicted topic, P(topic | text) − P(topic | text without it).

Occlusion runs on any backend (ONNX int8 on the CPU included) in one batched call of n_words + 1
sequences: cheap enough for one item on demand (~30 ms for a 30-word headline here), not for a
stream. It sees each word on its own; words that only matter together (\"not good\") show up
split between them.

Room: serving (loads a built artifact and scores; torch only for the reference backend). See models/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.artifact import InvalidText, Prediction, validate_texts
from models.metrics import softmax

MAX_WORDS = 256


@dataclass
class WordAttribution:
    word: str
    start: int  # character offsets into the text
    end: int
    sentiment: float  # change of P(positive) − P(negative) the word is responsible for
    topic: float  # change of P(predicted topic)

    def to_dict(self) -> dict:
        return {"word": self.word, "start": self.start, "end": self.end, "sentiment": round(self.sentiment, 6),
                "topic": round(self.topic, 6)}


@dataclass
class Explanation:
    text: str
    prediction: Prediction
    words: list[WordAttribution] = field(default_factory=list)
    truncated_words: int = 0  # words beyond MAX_WORDS or the model's max length: not attributed

    def to_dict(self) -> dict:
        return {"text": self.text, "prediction": self.prediction.to_dict(),
                "words": [w.to_dict() for w in self.words], "truncated_words": self.truncated_words,
                "method": "occlusion ([MASK] per word)"}


def explain(scorer, text: str, max_words: int = MAX_WORDS) -> Explanation:
    """`scorer` is a models.runtime.Scorer (its public infer_ids and prediction; usually called as
    scorer.explain(text))."""
    errors = validate_texts([text])
    if errors:
        raise InvalidText(errors)
    tok = scorer.tokenizer.tok
    enc = scorer.tokenizer.encodings([text])[0]  # a web address reads as its scheme word (encoder_text)
    mask_id = tok.token_to_id("[MASK]")
    if mask_id is None:
        raise RuntimeError("the tokenizer has no [MASK] token; occlusion needs one")
    spans: dict[int, list[int]] = {}  # word index -> token positions
    for pos, w in enumerate(enc.word_ids):
        if w is not None:
            spans.setdefault(w, []).append(pos)
    words = sorted(spans)
    total_words = len(words) + (_words_cut(text, enc))
    words = words[:max_words]
    ids = list(enc.ids)
    variants = [ids]
    for w in words:
        v = list(ids)
        for pos in spans[w]:
            v[pos] = mask_id
        variants.append(v)
    topic_logits = np.zeros((len(variants), len(scorer.meta.topics)), np.float32)
    sent_logits = np.zeros((len(variants), len(scorer.meta.sentiments)), np.float32)
    for i in range(0, len(variants), scorer.max_batch):
        topic_logits[i:i + scorer.max_batch], sent_logits[i:i + scorer.max_batch] = \
            scorer.infer_ids(variants[i:i + scorer.max_batch])
    tp = softmax(topic_logits, scorer.meta.temperature_topic)
    sp = softmax(sent_logits, scorer.meta.temperature_sentiment)
    sents = scorer.meta.sentiments
    signed = sp[:, sents.index("positive")] - sp[:, sents.index("negative")]
    ti = int(tp[0].argmax())
    out = []
    for j, w in enumerate(words, start=1):
        start = enc.offsets[spans[w][0]][0]
        end = enc.offsets[spans[w][-1]][1]
        out.append(WordAttribution(text[start:end], start, end, float(signed[0] - signed[j]),
                                   float(tp[0, ti] - tp[j, ti])))
    prediction = scorer.prediction(tp[0], sp[0], bool(enc.overflowing))
    return Explanation(text, prediction, out, max(0, total_words - len(out)))


def _words_cut(text: str, enc) -> int:
    """Words after the model's max length (the tokenizer truncated them): a rough count."""
    if not enc.overflowing:
        return 0
    last = max((e for _, e in enc.offsets), default=0)
    return len(text[last:].split())
