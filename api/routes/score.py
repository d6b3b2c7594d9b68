"""POST /v1/score: up to 64 texts → topic and sentiment with probabilities, and who each text
is about (entities, from the symbol directory, with their sentiment: models.entity_scores, as the
worker stores them), from the model runtime in-process; concurrent requests share model calls
(api/scoring.py).
GET /v1/events/{source}/{id}/explain: which words made the model score a stored event so, and the
event's entities (as GET /v1/events gives them)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from api import queries as q
from api import history
from api.deps import DbDep, ReadDbDep, Reader, StrictJSONRoute
from api.entities import attach
from api.schemas import ExplanationPublic, Message, ScoreRequest, ScoreResponse
from api.scoring import ModelUnavailable
from models.entity_scores import entities_json, entity_sentiments

router = APIRouter(tags=["score"], route_class=StrictJSONRoute)


@router.post("/v1/score", response_model=ScoreResponse, responses={503: {"model": Message}},
             summary="Score texts (topic + sentiment, with probabilities)")
async def score(body: ScoreRequest, request: Request, db: DbDep, _: Reader) -> ScoreResponse:
    await db.release()  # a key's lookup took one: not held through the model
    try:
        version, preds = await request.app.state.scorer.predict(body.texts)
    except ModelUnavailable:  # the reason is in the API's log, not for clients
        raise HTTPException(503, "model unavailable") from None
    linker = await request.app.state.entities.linker()
    ents = [linker.link(t) for t in body.texts]  # about 20 µs a text: no thread needed for 64
    # items naming several companies: the target-aware head, in a thread (a few ms per entity)
    scores = await asyncio.to_thread(entity_sentiments, request.app.state.scorer.scorer, list(zip(body.texts, preds)),
                                     ents)
    return ScoreResponse(model_version=version, items=[{**p.to_dict(), "entities": entities_json(e, s)}
                                                        for p, e, s in zip(preds, ents, scores)])


@router.get("/v1/events/{source}/{event_id}/explain", response_model=ExplanationPublic,
            responses={404: {"model": Message}, 503: {"model": Message}},
            summary="Per-word attributions for a stored event's sentiment and topic (occlusion)")
async def explain_event(source: Annotated[str, Path(min_length=1, max_length=64)],
                        event_id: Annotated[str, Path(min_length=1, max_length=256)],
                        request: Request, db: ReadDbDep) -> ExplanationPublic:
    conn = await db.conn()
    event = await conn.fetchrow(q.EVENT_BY_KEY, source, event_id)
    if event is None:
        raise await history.not_found(conn, f"event {source}/{event_id}")
    (stored,) = await attach(conn, [dict(event)])  # its entities, as GET /v1/events gives them
    await db.release()  # the model's run takes a while: the pooled connection is not held through it
    try:
        exp = await request.app.state.scorer.explain(event["text"])
    except ModelUnavailable:  # the reason is in the API's log, not for clients
        raise HTTPException(503, "model unavailable") from None
    return ExplanationPublic(source=source, id=event_id, model_version=exp.prediction.model_version,
                             entities=stored["entities"], **exp.to_dict())
