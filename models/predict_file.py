"""Score a CSV or JSONL file into JSONL, one object per input row, in input order.

Each scored row carries `entities`: who the text is about (models.entities: the user's symbol
directory or the shipped one), most relevant first, each `{ticker, name, relevance, sentiment,
score, spans, sources, sentiment_from}` (models.entity_scores, as the worker stores them): an
entity below Settings.entity_min_relevance keeps the item's sentiment, as in the worker.

Rows: in JSONL a row is a line (row N = line N; a blank line is a row too, so that output line N
answers input line N); in CSV a row is a record after the header (row 1 = the first one; blank
lines are not records; a quoted field may span lines). A row that cannot be scored (empty text,
a blank JSONL line, a line that is not JSON, not UTF-8 or not an object, a text that is not a
string, a CSV record without a value in the text column or with broken quoting) becomes
`{"row": N, "error": "..."}`; `predict_file` also returns the first few as "line L (row N):
reason". A file that cannot be read at all (missing, a directory, not UTF-8 CSV, no such column
in the header, a quoted CSV field never closed, a JSONL file with no object or no object with the
text field, a pretty-printed JSON document) raises `DataError` naming the file and line, and no
output is written: the output goes to a temporary file beside it, renamed over it at the end (a
device or a pipe, e.g. /dev/stdout, is written to as it goes). An output that is a directory,
in a missing folder or the input file itself is refused before anything is read.

The file is streamed (a chunk of rows at a time; a regular file is read twice, first to check it
and count its rows). A UTF-8 BOM is skipped; a UTF-16 or UTF-32 file with a BOM is decoded. A CSV
header separated by ';', tab or '|' instead of ',' is recognised by the text column in it. A text
longer than SCORE_MAX_CHARS is scored and linked on its first SCORE_MAX_CHARS characters (the
model reads its first 128 tokens anyway; the tokenizer would go through all of it: 79 s and
6.6 GB for a 50 MB line) and marked `truncated`.

Room: serving (loads a built artifact and scores; torch only for the reference backend). See models/README.md.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from models.data import DataError, csv_records, open_binary
from models.entity_scores import entities_json, entity_sentiments
from models.runtime import Scorer, validate_texts

Row = tuple[int, str | None, str | None]  # (row number from 1, text, error)
Located = tuple[int, int, str | None, str | None]  # (row, the line it starts on, text, error)

SCORE_MAX_CHARS = 100_000  # a longer text is scored on this many characters (the model reads ~500)
FIELD_MAX_CHARS = 2**31 - 1  # csv's default (131,072) would refuse a long text
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8
_JSON_AT = re.compile(r": line \d+ column (\d+) \(char \d+\)$")


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        f = fmt.strip().lower()
        if f in ("csv", "tsv"):
            return "csv"
        if f in ("jsonl", "ndjson", "json"):
            return "jsonl"
        raise DataError(f"unknown format {fmt!r}; use csv or jsonl")
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise DataError(f"{path}: cannot tell the format from the suffix; pass --format csv|jsonl")


def _encoding(f) -> str:
    """utf-32 / utf-16 where the file starts with their BOM, else utf-8 (its BOM skipped)."""
    head = f.peek(4)[:4]
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"


def _text(f, encoding: str) -> io.TextIOWrapper:
    if encoding == "utf-8":  # a bad byte becomes a lone surrogate: the reader says on which line
        return io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return io.TextIOWrapper(f, encoding=encoding, newline="")


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(v), type(v).__name__)


@contextmanager
def field_limit():
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, FIELD_MAX_CHARS))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _header_fields(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def _column_index(header: list[str], column: str) -> int | None:
    """The text column: its exact name, else the one name equal to it but for spaces and case."""
    if column in header:
        return header.index(column)
    loose = [i for i, h in enumerate(header) if h.strip().casefold() == column.strip().casefold()]
    return loose[0] if len(loose) == 1 else None


def _csv_located(path: Path, column: str) -> Iterator[Located]:
    with open_binary(path) as raw, field_limit():
        enc = _encoding(raw)
        text = _text(raw, enc)
        try:
            first = text.readline()
            if not first.strip():
                raise DataError(f"{path}: empty file (no header line)" if not first
                                else f"{path}:1: the header line is empty")
            candidates = ("\t",) if Path(path).suffix.lower() == ".tsv" else ()
            candidates += tuple(d for d in (",", ";", "\t", "|") if d not in candidates)
            delimiter = next((d for d in candidates if _column_index(_header_fields(first, d), column) is not None),
                             candidates[0])
            header = _header_fields(first, delimiter)
            if _BAD_BYTE.search(first):
                raise DataError(f"{path}:1: not valid UTF-8; re-encode the file as UTF-8")
            idx = _column_index(header, column)
            if idx is None:
                raise DataError(f"{path}: no column {column!r} (columns: {', '.join(header)})")
            n = 0
            for start, rec, err in csv_records(csv.reader(text, delimiter=delimiter, strict=True), offset=1):
                if err is not None:
                    if "unexpected end of data" in err:
                        raise DataError(f"{path}:{start}: a quoted field opens on this line and is never closed "
                                        "(the rest of the file would be one text)")
                    n += 1
                    yield n, start, None, f"malformed CSV on line {start}: {err}"
                    continue
                n += 1
                if any(_BAD_BYTE.search(v) for v in rec):
                    raise DataError(f"{path}:{start}: not valid UTF-8; re-encode the file as UTF-8")
                if idx >= len(rec):
                    yield n, start, None, f"line {start} has {len(rec)} field(s), none in column {column!r}"
                else:
                    yield n, start, rec[idx], None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid {enc.upper()} ({exc.reason}); re-encode the file as UTF-8") from None


@contextmanager
def open_text(path: Path) -> Iterator[io.TextIOWrapper]:
    """The file as text for csv (newline=''): UTF-8 (BOM skipped; a byte that is not UTF-8 comes
    out as a lone surrogate, see `bad_bytes`) or UTF-16/32 by their BOM; DataError when unreadable."""
    with open_binary(path) as raw:
        enc = _encoding(raw)
        try:
            yield _text(raw, enc)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid {enc.upper()} ({exc.reason}); re-encode the file as UTF-8") from None


def bad_bytes(text: str) -> bool:
    """Whether text read by `open_text` held a byte that is not UTF-8."""
    return _BAD_BYTE.search(text) is not None


def _split_lines(line: bytes) -> list[bytes]:
    """One line as a file iterator gives it, without its end; a lone CR ends a line too."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.split(b"\r") if b"\r" in line else [line]


def byte_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as UTF-8 bytes (as they are, for UTF-8; a UTF-8 BOM skipped; UTF-16/32 decoded)."""
    with open_binary(path) as raw:
        enc = _encoding(raw)
        if enc == "utf-8":
            first = True
            for line in raw:
                if first:
                    line, first = line.removeprefix(codecs.BOM_UTF8), False
                yield from _split_lines(line)
            return
        try:
            for line in _text(raw, enc):
                yield from _split_lines(line.encode("utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid {enc.upper()} ({exc.reason}); re-encode the file as UTF-8") from None


def _jsonl_located(path: Path, column: str) -> Iterator[Located]:
    lines = objects = with_field = 0
    first_problem: tuple[int, str] | None = None
    first_keys: tuple[int, list[str]] | None = None
    for n, line in enumerate(byte_lines(path), 1):
        if not line.strip(b" \t\r\n"):
            yield n, n, None, "blank line"
            continue
        lines += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if lines == 1 and line.strip() in (b"[", b"{"):
                raise DataError(f"{path}:{n}: a JSON document spread over lines, not JSON Lines; predict reads "
                                "one object per line (e.g. jq -c '.[]' FILE)") from None
            msg = str(exc)
            err = "not valid UTF-8" if "utf-8" in msg.lower() else "not JSON: " + _JSON_AT.sub(r" (column \1)", msg)
            first_problem = first_problem or (n, err)
            yield n, n, None, err
            continue
        if not isinstance(obj, dict):
            err = f"not a JSON object ({_json_type(obj)})"
            first_problem = first_problem or (n, err)
            yield n, n, None, err
            continue
        objects += 1
        if column not in obj:
            first_keys = first_keys or (n, list(obj)[:12])
            yield n, n, None, f"no field {column!r}"
            continue
        with_field += 1
        value = obj[column]
        if isinstance(value, str):
            yield n, n, value, None
        else:
            yield n, n, None, f"field {column!r} is {_json_type(value)}, not a string"
    if lines and not objects and first_problem:
        raise DataError(f"{path}: no line is a JSON object (line {first_problem[0]}: {first_problem[1]}); "
                        "predict reads JSON Lines, one object per line")
    if objects and not with_field and first_keys:
        raise DataError(f"{path}: no line has a field {column!r} (line {first_keys[0]} has: "
                        f"{', '.join(first_keys[1]) or 'no fields'}); pass --text-column")


def csv_rows(path: Path, column: str) -> Iterator[Row]:
    for n, _, text, err in _csv_located(path, column):
        yield n, text, err


def jsonl_rows(path: Path, column: str) -> Iterator[Row]:
    for n, _, text, err in _jsonl_located(path, column):
        yield n, text, err


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


def check_paths(src: Path, dst: Path) -> None:
    """Refuse, before any work, an input that cannot be opened and an output that cannot be
    written: a directory, a file in a missing folder, the input file itself."""
    with open_binary(Path(src)):
        pass
    dst = Path(dst)
    if dst.is_dir():
        raise DataError(f"{dst}: is a directory; give the name of the file to write")
    if dst.exists() and not dst.is_file():
        return  # a device or a pipe (/dev/stdout): written as it goes
    parent = Path(os.path.realpath(dst)).parent
    if not parent.is_dir():
        raise DataError(f"{dst}: no such folder {parent}" if not parent.exists() else f"{dst}: {parent} is not a folder")
    if dst.exists() and Path(src).is_file() and os.path.samefile(src, dst):
        raise DataError(f"{dst}: is the input file; write the output to another file")
    if not os.access(parent, os.W_OK):
        raise DataError(f"{dst}: cannot write in {parent} (permission denied)")


@contextmanager
def _output(dst: Path):
    """The output, written to a temporary file beside it and renamed over it when complete (nothing
    is left behind, and an older output is kept, when scoring fails); a device or pipe directly."""
    dst = Path(dst)
    if dst.exists() and not dst.is_file():
        with open(dst, "wb") as out:
            yield out
        return
    real = Path(os.path.realpath(dst))
    tmp = real.with_name(f".{real.name}.{os.getpid()}.part")
    try:
        out = open(tmp, "wb")
    except OSError as exc:
        raise DataError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    try:
        with out:
            yield out
        if real.exists():
            os.chmod(tmp, stat.S_IMODE(real.stat().st_mode))
        os.replace(tmp, real)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _prefix(text: str) -> str:
    """The first SCORE_MAX_CHARS characters, cut after a space where there is one near the end."""
    cut = text[:SCORE_MAX_CHARS]
    at = max(cut.rfind(c, SCORE_MAX_CHARS - 2000) for c in (" ", "\n", "\t"))
    return cut[: at + 1] if at > 0 else cut


def predict_file(scorer: Scorer, src: Path, dst: Path, column: str = "text", fmt: str | None = None,
                 chunk: int = 1024, progress=None, linker=None, min_relevance: float | None = None) -> dict:
    """`linker`: a models.entities.Linker (default: `default_linker()`; False: no entities).
    `min_relevance`: the entity relevance cut (default: Settings.entity_min_relevance).
    Returns counts {rows, scored, errors} and `first_errors`: up to 5 "line L (row N): reason"."""
    fmt = detect_format(src, fmt)
    check_paths(src, dst)
    linker = default_linker() if linker is None else (linker or None)
    if min_relevance is None:
        min_relevance = configured_min_relevance()
    located = _csv_located if fmt == "csv" else _jsonl_located
    total = sum(1 for _ in located(src, column)) if Path(src).is_file() else None  # checks it, before any output
    task = progress.add_task(f"scoring {Path(src).name}", total=total) if progress else None
    counts: dict = {"rows": 0, "scored": 0, "errors": 0, "first_errors": []}

    def flush(batch: list[Located], out) -> None:
        rows, cut = [], set()
        for n, _, text, err in batch:
            if err is None and isinstance(text, str) and len(text) > SCORE_MAX_CHARS:
                text = _prefix(text)
                cut.add(n)
            rows.append((n, text, err))
        for (n, line, _, _), obj in zip(batch, score_rows(scorer, rows, linker, min_relevance)):
            if "error" in obj:
                counts["errors"] += 1
                if len(counts["first_errors"]) < 5:
                    counts["first_errors"].append(f"line {line} (row {n}): {obj['error']}")
            else:
                counts["scored"] += 1
                if n in cut:
                    obj["truncated"] = True
            out.write(orjson.dumps(obj) + b"\n")
        counts["rows"] += len(batch)
        if progress is not None:
            progress.advance(task, len(batch))

    with _output(dst) as out:
        batch: list[Located] = []
        for row in located(src, column):
            batch.append(row)
            if len(batch) >= chunk:
                flush(batch, out)
                batch = []
        if batch:
            flush(batch, out)
    return counts
