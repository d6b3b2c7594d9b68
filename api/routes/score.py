"""POST /v1/score: up to 64 texts → topic and sentiment with probabilities, from the model
runtime in-process; concurrent requests share model calls (api/scoring.py)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from api.deps import Reader
from api.schemas import Message, ScoreRequest, ScoreResponse
from api.scoring import ModelUnavailable

router = APIRouter(prefix="/v1/score", tags=["score"])


@router.post("", response_model=ScoreResponse, responses={503: {"model": Message}},
             summary="Score texts (topic + sentiment, with probabilities)")
async def score(body: ScoreRequest, request: Request, _: Reader) -> ScoreResponse:
    try:
        version, preds = await request.app.state.scorer.predict(body.texts)
    except ModelUnavailable as exc:
        raise HTTPException(503, f"model unavailable: {exc}") from None
    return ScoreResponse(model_version=version, items=[p.to_dict() for p in preds])
