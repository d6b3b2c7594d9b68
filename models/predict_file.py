"""Score a CSV or JSONL file into JSONL, one object per input row, in input order.

Each scored row carries `entities`: who the text is about (models.entities: the user's symbol
directory or the shipped one), most relevant first, each `{ticker, name, relevance, sentiment,
score, spans, sources, sentiment_from}` (models.entity_scores, as the worker stores them): an
entity below Settings.entity_min_relevance keeps the item's sentiment, as in the worker.

A row that cannot be scored (empty text, a JSONL line that is not JSON or not UTF-8, a row
without the text field) becomes `{"row": N, "error": "..."}`; a file that cannot be read at
all (missing, not UTF-8 CSV, no such column in the header) raises `DataError` before any
output is written.

Room: serving (loads a built artifact and scores; torch only for the reference backend). See models/README.md.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import orjson

from models.data import DataError, read_text, read_bytes
from models.entity_scores import entities_json, entity_sentiments
from models.runtime import Scorer, validate_texts

Row = tuple[int, str | None, str | None]  # (row number from 1, text, error)


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise DataError(f"{path}: cannot tell the format from the suffix; pass --format csv|jsonl")


def csv_rows(path: Path, column: str) -> Iterator[Row]:
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise DataError(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
    for n, row in enumerate(reader, 1):
        yield n, row[column], None


def jsonl_rows(path: Path, column: str) -> Iterator[Row]:
    for n, line in enumerate(read_bytes(path).splitlines(), 1):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield n, None, ("not valid UTF-8" if "utf-8" in str(exc).lower() else f"not JSON: {exc}")
            continue
        if not isinstance(obj, dict) or column not in obj:
            yield n, None, f"no field {column!r}"
        else:
            yield n, obj[column], None


def default_linker():
    """The linker `finsent predict` uses unless given one: the user's directory, else the shipped one."""
    from models.entities import Directory, Linker

    return Linker(Directory.configured())


def configured_min_relevance() -> float:
    """The relevance cut the worker uses (Settings.entity_min_relevance, FINSENT_ENTITY_MIN_RELEVANCE)."""
    from core.settings import get_settings

    return float(get_settings().entity_min_relevance)


def score_rows(scorer: Scorer, rows: list[Row], linker=None, min_relevance: float | None = None) -> list[dict]:
    """Predictions (with `entities` when a linker is given) or `{row, error}`, in row order.
    `min_relevance`: entities below it keep the item's sentiment, as in the worker (default: the
    configured `entity_min_relevance`)."""
    if min_relevance is None:
        min_relevance = configured_min_relevance()
    texts = [(n, t) for n, t, err in rows if err is None]
    bad = validate_texts([t for _, t in texts])
    good = [(n, t) for i, (n, t) in enumerate(texts) if i not in bad]
    preds = dict(zip((n for n, _ in good), scorer.predict([t for _, t in good])))
    out = {n: p.to_dict() for n, p in preds.items()}
    if linker is not None and good:
        ents = [linker.link(t) for _, t in good]
        scores = entity_sentiments(scorer, [(t, preds[n]) for n, t in good], ents, min_relevance=min_relevance)
        for (n, _), e, s in zip(good, ents, scores):
            out[n]["entities"] = entities_json(e, s)
    errors = {n: err for n, _, err in rows if err is not None} | {texts[i][0]: r for i, r in bad.items()}
    return [out[n] if n in out else {"row": n, "error": errors[n]} for n, _, _ in rows]


def predict_file(scorer: Scorer, src: Path, dst: Path, column: str = "text", fmt: str | None = None,
                 chunk: int = 1024, progress=None, linker=None, min_relevance: float | None = None) -> dict[str, int]:
    """`linker`: a models.entities.Linker (default: `default_linker()`; False: no entities).
    `min_relevance`: the entity relevance cut (default: Settings.entity_min_relevance)."""
    linker = default_linker() if linker is None else (linker or None)
    if min_relevance is None:
        min_relevance = configured_min_relevance()
    fmt = detect_format(src, fmt)
    rows = list((csv_rows if fmt == "csv" else jsonl_rows)(src, column))
    task = progress.add_task(f"scoring {Path(src).name}", total=len(rows)) if progress else None
    counts = {"rows": len(rows), "scored": 0, "errors": 0}
    with open(dst, "wb") as out:
        for start in range(0, len(rows), chunk):
            for obj in score_rows(scorer, rows[start : start + chunk], linker, min_relevance):
                counts["errors" if "error" in obj else "scored"] += 1
                out.write(orjson.dumps(obj) + b"\n")
            if progress is not None:
                progress.advance(task, min(chunk, len(rows) - start))
    return counts
