"""Sentiment per entity of a scored item: the one place the worker (stream.pipeline), `POST
/v1/score` and `finsent predict` / `explain` get it from, so they never disagree.

    ents = linker.link(text)                                   # models.entities
    scores = entity_sentiments(scorer, [(text, prediction)], [ents])[0]
    entities_json(ents, scores)  # [{ticker, name, relevance, sentiment, score, spans, sources, sentiment_from}]

An item naming one entity keeps its item's sentiment (`sentiment_from` = `item`: on single-entity
tweets the item head reads better, 0.836 against the target-aware head's 0.742). Where an item
names several, each entity mentioned in the text goes through the target-aware head
(models.runtime.Scorer.entity_sentiment, models/entity_sentiment.py): `entity_head`. An entity
with no span (a feed tag the text never names), or a scorer without the head (an artifact
without entity_head.safetensors, a benchmark's null scorer), keeps the item's: `item_shared`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core import logs

log = logs.get("finsent.entities")
ITEM, ITEM_SHARED, HEAD = "item", "item_shared", "entity_head"  # event_entity.sentiment_from
_warned: set[str] = set()


@dataclass(frozen=True)
class EntityScore:
    sentiment: str
    score: float  # p(positive) - p(negative)
    source: str  # item | item_shared | entity_head


def entity_sentiments(scorer, items: Sequence[tuple[str, object]],
                      entities: Sequence[Sequence]) -> list[list[EntityScore]]:
    """Per item, per entity (same order): its sentiment. `items`: (text, the item's Prediction);
    `entities`: the linker's entities of each item. The head runs once, batched, over every
    (item, entity) pair that needs it."""
    out = [[EntityScore(p.sentiment, float(p.score), ITEM if len(ents) <= 1 else ITEM_SHARED) for _ in ents]
           for (_, p), ents in zip(items, entities)]
    pairs, where = [], []
    for i, ((text, _), ents) in enumerate(zip(items, entities)):
        if len(ents) > 1:
            for j, e in enumerate(ents):
                if e.spans:
                    pairs.append((text, [list(s) for s in e.spans]))
                    where.append((i, j))
    head = getattr(scorer, "entity_sentiment", None)
    if not pairs or head is None:
        return out
    try:
        results = head(pairs)
    except Exception as exc:  # noqa: BLE001 - BackendUnavailable (no head in this artifact) and the like
        reason = f"{type(exc).__name__}: {exc}"[:300]
        if reason not in _warned:  # once per reason: rows say item_shared, the log says why
            _warned.add(reason)
            log.warning("per-entity sentiment unavailable; entities keep their item's sentiment", error=reason)
        return out
    for (i, j), r in zip(where, results):
        out[i][j] = EntityScore(r.sentiment, float(r.score), HEAD)
    return out


def entities_json(entities: Sequence, scores: Sequence[EntityScore]) -> list[dict]:
    """The `entities` list of predict / API output, most relevant first (the linker's order)."""
    return [{**e.to_json(), "sentiment": s.sentiment, "score": s.score, "sentiment_from": s.source}
            for e, s in zip(entities, scores)]
