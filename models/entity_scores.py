"""Sentiment per entity of a scored item: the one place the worker (stream.pipeline), `POST
/v1/score` and `finsent predict` / `explain` get it from, so they never disagree.

    ents = linker.link(text)                                   # models.entities
    scores = entity_sentiments(scorer, [(text, prediction)], [ents])[0]
    entities_json(ents, scores)  # [{ticker, name, relevance, sentiment, score, spans, sources, sentiment_from}]

Today every entity gets its item's sentiment and score; `sentiment_from` says `item` where the item
names one entity and `item_shared` where it names several (the items a target-aware head,
models.runtime.Scorer.entity_sentiment, would score per entity: switch it on here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ITEM, ITEM_SHARED = "item", "item_shared"  # event_entity.sentiment_from; the model head: "entity_head"


@dataclass(frozen=True)
class EntityScore:
    sentiment: str
    score: float  # p(positive) - p(negative)
    source: str  # item | item_shared | entity_head


def entity_sentiments(scorer, items: Sequence[tuple[str, object]],
                      entities: Sequence[Sequence]) -> list[list[EntityScore]]:
    """Per item, per entity (same order): its sentiment. `items`: (text, the item's Prediction);
    `entities`: the linker's entities of each item. `scorer` is unused until the head is switched on."""
    out = []
    for (_, p), ents in zip(items, entities):
        src = ITEM if len(ents) <= 1 else ITEM_SHARED
        out.append([EntityScore(p.sentiment, float(p.score), src) for _ in ents])
    return out


def entities_json(entities: Sequence, scores: Sequence[EntityScore]) -> list[dict]:
    """The `entities` list of predict / API output, most relevant first (the linker's order)."""
    return [{**e.to_json(), "sentiment": s.sentiment, "score": s.score, "sentiment_from": s.source}
            for e, s in zip(entities, scores)]
