"""Sentiment per entity of a scored item: the one place the worker (stream.pipeline), `POST
/v1/score` and `finsent predict` / `explain` get it from, so they never disagree.

    ents = linker.link(text)                                   # models.entities
    scores = entity_sentiments(scorer, [(text, prediction)], [ents])[0]
    entities_json(ents, scores)  # [{ticker, name, relevance, sentiment, score, spans, sources, sentiment_from}]

An item naming one entity keeps its item's sentiment (`sentiment_from` = `item`: on single-entity
tweets the item head reads better, 0.836 against the target-aware head's 0.742). Where an item
names several, each entity mentioned in the text goes through the target-aware head
(models.runtime.Scorer.entity_sentiment, models/entity_sentiment.py): `entity_head`. The head
reads the entity twice, in the whole text and in its own clause alone (models.entities.clauses:
the text cut at the strongest boundary between two companies' mentions: ';', while, but, as, a
comma ...), and the two distributions are averaged. Held out, on two-entity items of opposite tone
built from held-out tweets, both entities right 0.591 against 0.546 for the whole text alone
(same tone 0.638 against 0.667; docs/entities.md). An entity that shares its clause with another
("Apple and Samsung slide") is read in the whole text only. An entity
with no span (a feed tag the text never names), one past HEAD_MAX_ENTITIES, or a scorer without
the head (an artifact without entity_head.safetensors, a benchmark's null scorer), keeps the
item's: `item_shared`. Entities below the relevance cut are read too (after the counted ones): the
cut decides what the rollups and the detector count, not whose sentiment is right — a company
named after '; ' or ' - ' links below it, and the item's sentiment read it wrong in every
opposite-tone pair (served, opposite-tone tweet pairs both right 0.251 → 0.601).

Room: serving (loads a built artifact and scores; torch only for the reference backend). See models/README.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core import logs
from models.entities.clauses import scopes
from models.entities.linker import DEFAULT_MIN_RELEVANCE

log = logs.get("finsent.entities")
ITEM, ITEM_SHARED, HEAD = "item", "item_shared", "entity_head"  # event_entity.sentiment_from
_warned: set[str] = set()


@dataclass(frozen=True)
class EntityScore:
    sentiment: str
    score: float  # p(positive) - p(negative)
    source: str  # item | item_shared | entity_head


HEAD_MAX_ENTITIES = 3  # per item, the most relevant ones; a list of cashtags ("$SPY $QQQ $TSLA ...") shares its tone


def entity_sentiments(scorer, items: Sequence[tuple[str, object]], entities: Sequence[Sequence],
                      min_relevance: float = DEFAULT_MIN_RELEVANCE) -> list[list[EntityScore]]:
    """Per item, per entity (same order): its sentiment. `items`: (text, the item's Prediction);
    `entities`: the linker's entities of each item, most relevant first. The head runs once,
    batched, over every (item, entity) pair that needs it: the entities the text names, those at
    or above `min_relevance` first (the ones the rollups and the detector count: pass
    Settings.entity_min_relevance), at most HEAD_MAX_ENTITIES per item; the others keep the
    item's (`item_shared`). A whole-text reading
    reuses the token states the scorer's `predict` computed for the item (a few matrix products);
    an own-clause reading costs an encoder pass over the clause."""
    out = [[EntityScore(p.sentiment, float(p.score), ITEM if len(ents) <= 1 else ITEM_SHARED) for _ in ents]
           for (_, p), ents in zip(items, entities)]
    pairs, where = [], []
    for i, ((text, _), ents) in enumerate(zip(items, entities)):
        if len(ents) > 1:
            clauses = scopes(text, [e.spans for e in ents])
            # the counted entities first (at or above min_relevance), then the others the text names:
            # a company after '; ' or ' - ' sits outside the lead sentence and links below the cut,
            # and sharing the item's sentiment read it wrong in every opposite-tone pair
            with_spans = [j for j, e in enumerate(ents) if e.spans]
            chosen = sorted(with_spans, key=lambda j: ents[j].relevance < min_relevance)[:HEAD_MAX_ENTITIES]
            for j in chosen:
                e = ents[j]
                pairs.append((text, [list(s) for s in e.spans]))
                own = clause_input(text, e.spans, clauses[j])
                where.append((i, j, own is not None))
                if own is not None:
                    pairs.append(own)
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
    k = 0
    for i, j, has_clause in where:
        r = results[k]
        if has_clause:
            r = _mean(r, results[k + 1])
            k += 1
        k += 1
        out[i][j] = EntityScore(r.sentiment, float(r.score), HEAD)
    return out


def clause_input(text: str, spans: Sequence[Sequence[int]], clause: str | None) -> tuple[str, list[list[int]]] | None:
    """(clause, the entity's spans within it), or None where the entity has no clause of its own
    or the clause is the whole text."""
    if not clause or clause == text.strip():
        return None
    at = text.find(clause)
    if at < 0:  # a scope of non-adjacent pieces: the entity's first piece holds its first mention
        return None
    inside = [[s - at, e - at] for s, e in spans if at <= s and e <= at + len(clause)]
    return (clause, inside) if inside else None


def _mean(a, b):
    """The average of two of the head's readings (sentiment, score, probs)."""
    probs = {k: (a.probs[k] + b.probs[k]) / 2 for k in a.probs}
    best = max(probs, key=probs.get)
    score = round(probs.get("positive", 0.0) - probs.get("negative", 0.0), 6)
    return type(a)(best, score, {k: round(v, 6) for k, v in probs.items()}, a.source)


def entities_json(entities: Sequence, scores: Sequence[EntityScore]) -> list[dict]:
    """The `entities` list of predict / API output, most relevant first (the linker's order)."""
    return [{**e.to_json(), "sentiment": s.sentiment, "score": s.score, "sentiment_from": s.source}
            for e, s in zip(entities, scores)]
