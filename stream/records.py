"""Input validation and the typed records on finsent's topics. Pure: no Kafka here.

Input (finsent.news / finsent.social), JSON: {"id", "source", "text", "published_at",
"title"?, "url"?, "tickers"?, "lang"?}. Anything else — not JSON, not UTF-8, wrong types,
missing or oversize text, unknown fields, a value its column cannot hold — raises `Invalid`
with a reason that goes to the dead-letter topic with the original bytes. Every field is checked
against its column in scored_event (core/db.py: lengths, no NUL in any text, published_at within
PUBLISHED_RANGE), so a message that passes decode is never refused by Postgres nor retried forever
(a published_at of 0001-01-01T00:00:00+01:00 used to pass here and make asyncpg's COPY raise
OverflowError, holding every partition).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The span of published_at that is stored and counted; outside it the value is a mistake, not news.
PUBLISHED_RANGE = (datetime(1900, 1, 1, tzinfo=timezone.utc), datetime(2200, 1, 1, tzinfo=timezone.utc))
# RFC 2822 dates as RSS writes pubDate: optional weekday, day, month name, year, time, zone
_RFC2822 = re.compile(r"^\s*(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+(\d{4})\s+\d{1,2}:\d{2}(?::\d{2})?\s+\S+\s*$")
MAX_TICKERS = 50  # tickers an item may name: the field, or the distinct cashtags of its text
CASHTAG = re.compile(r"(?<![A-Za-z0-9$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)\b")


# Markup a feed's text may carry (an RSS description, a scraped page): a tag of HTML's own, not any '<...>'
_HTML_TAG = re.compile(r"</?(?:p|br|div|span|a|b|i|u|em|strong|img|ul|ol|li|h[1-6]|table|tbody|thead|tr|td|th|font"
                       r"|blockquote|figure|figcaption|section|article|header|footer|hr|sup|sub|small|pre|code"
                       r"|iframe|script|style)\b[^<>]*>", re.IGNORECASE)
_BLOCK_TAGS = frozenset({"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td", "th",
                         "table", "blockquote", "hr", "section", "article", "header", "footer", "figure",
                         "figcaption", "pre"})


class _TextOf(HTMLParser):
    """The words of an HTML fragment: tags dropped (a block tag leaves a space), character
    references read, script and style left out."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.out.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.out.append(" ")

    def handle_data(self, data):
        if not self.hidden:
            self.out.append(data)


def html_text(text: str) -> str:
    """`text` as words when it carries HTML markup (an RSS description: '<p>Boeing &amp; ...</p>'),
    else unchanged (a tweet's '&amp;' stays as the model was trained on it)."""
    if "<" not in text or not _HTML_TAG.search(text):
        return text
    parser = _TextOf()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser's asserts on broken declarations ('<![x'): score it as written
        return text
    return re.sub(r"\s+", " ", "".join(parser.out)).strip()


class Invalid(ValueError):
    """A message that cannot be processed; str(exc) is the dead-letter reason."""


class NewsEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    id: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1)
    published_at: datetime
    title: str | None = Field(None, max_length=2000)
    url: str | None = Field(None, max_length=2000)
    tickers: list[str] | None = Field(None, max_length=MAX_TICKERS)
    lang: str | None = Field(None, max_length=16)

    @model_validator(mode="before")
    @classmethod
    def _headline_only(cls, data):
        """A wire flash or an RSS item with a title and no body (text missing, empty or blank) is
        read from its title: the title is its text."""
        if isinstance(data, dict) and isinstance(title := data.get("title"), str) and title.strip():
            text = data.get("text")
            if text is None or (isinstance(text, str) and not text.strip()):
                return {**data, "text": title}
        return data

    @field_validator("text", "title")
    @classmethod
    def _words(cls, v: str | None) -> str | None:
        return v if v is None else html_text(v)

    @field_validator("id", mode="before")
    @classmethod
    def _integer_id(cls, v):
        """Many feeds number their items (tweet ids, numeric guids): 12345 is the item "12345"."""
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("published_at", mode="before")
    @classmethod
    def _rfc2822(cls, v):
        """RSS's pubDate form ('Mon, 07 Dec 2026 10:00:00 GMT', '... -0500') besides ISO-8601 and epoch
        seconds or milliseconds. A zone written as a name the standard does not define ('CET') is
        refused: read as UTC it would put the item an hour or more off."""
        if not isinstance(v, str) or not (m := _RFC2822.match(v)):
            return v
        try:
            parsed = parsedate_to_datetime(v)
        except Exception as exc:  # noqa: BLE001 - a reason, never an exception out of decode
            raise ValueError(f"not a date: {exc}") from None
        if parsed.year != int(m.group(1)):  # the standard's two-digit-year rule read '0001' as 2001
            raise ValueError(f"year {m.group(1)} out of range")
        zone = v.split()[-1]
        if parsed.tzinfo is None and zone not in ("-0000", "+0000"):
            raise ValueError(f"time zone {zone!r} is not a numeric offset or one RFC 2822 names; write e.g. +0100")
        return parsed

    @field_validator("published_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        v = v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        lo, hi = PUBLISHED_RANGE
        try:
            inside = lo <= v.astimezone(timezone.utc) < hi
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is year 0 in UTC
            inside = False
        if not inside:
            raise ValueError(f"{v.isoformat()} out of range ({lo.date()} to {hi.date()} UTC)")
        return v

    @field_validator("tickers")
    @classmethod
    def _tickers(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out = [t.strip().lstrip("$").upper() for t in v]
        if any(not t or len(t) > 16 for t in out):
            raise ValueError("tickers must be 1-16 characters")
        return sorted(set(out))

    def all_tickers(self) -> list[str]:
        """Given tickers, else the first MAX_TICKERS distinct cashtags found in the text (as many as the
        field may hold), sorted."""
        if self.tickers is not None:
            return self.tickers
        found = dict.fromkeys(m.upper() for m in CASHTAG.findall(self.text))
        return sorted(itertools.islice(found, MAX_TICKERS))


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "message"
        parts.append(f"{loc}: {'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}")
    return "; ".join(parts)


def decode(raw: bytes | None, max_chars: int, now: float | None = None, max_skew_s: float = 300.0) -> NewsEvent:
    """Validate one input message; `now` (epoch seconds, the receive time) bounds published_at:
    an event dated more than `max_skew_s` ahead would hold every window of its keys open."""
    if raw is None:
        raise Invalid("empty message (tombstone)")
    if raw[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark (Windows tools write one): JSON may ignore it
        raw = raw[3:]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid("invalid UTF-8" if "utf-8" in str(exc).lower() else f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Invalid(f"not a JSON object ({type(obj).__name__})")
    try:
        event = NewsEvent.model_validate(obj)
    except ValidationError as err:
        raise Invalid(_reason(err)) from None
    if not event.text.strip():
        markup = isinstance(obj.get("text"), str) and obj["text"].strip() != ""
        raise Invalid("text: empty" + (" (no words outside its HTML markup)" if markup else ""))
    nul = [name for name in ("text", "id", "source", "title", "url", "lang")
           if "\x00" in (getattr(event, name) or "")] + (["tickers"] if any("\x00" in t for t in event.tickers or ()) else [])
    if nul:  # Postgres text cannot hold NUL
        raise Invalid(f"NUL character in {', '.join(nul)}")
    if len(event.text) > max_chars:
        raise Invalid(f"text: {len(event.text)} characters, more than {max_chars}")
    if now is not None and (ahead := event.published_at.timestamp() - now) > max_skew_s:
        raise Invalid(f"published_at: {ahead:.0f} s in the future (more than {max_skew_s:.0f} s ahead of receive time)")
    return event


def aggregation_keys(topic: str, tickers: list[str]) -> list[str]:
    """The detector's keys of one event: its topic, and each of its tickers."""
    return [f"topic:{topic}"] + [f"ticker:{t}" for t in tickers]


# -- finsent.scored and finsent.alerts -------------------------------------------------------------
# Each message on them is one of the record classes below: `encode` gives its bytes, `decode_scored`
# / `AlertRecord.decode` read them back (the worker, the offline replay and the tests use the same).


@dataclass(frozen=True)
class Counts:
    """finsent.scored, Kafka key = the aggregation key: the new rows of one stored batch, counted per
    event-time slice (stream.counting): cells = [[slice, n, k, [sample ids], {ticker: [n, k]} | null,
    {story id: [negative copies, [sources]]}]] (n, k story-weighted, so possibly fractional; the
    sixth element is absent in records written before stories);
    batch = the outbox id (the detector counts a batch once per slice).
    JSON: {"kind": "counts", "key": "ticker:ACME", "batch": 17, "cells": [...]}"""

    key: str
    cells: list
    batch: int | None = None
    kind: ClassVar[str] = "counts"

    def encode(self) -> bytes:
        return orjson.dumps({"kind": self.kind, "key": self.key, "batch": self.batch, "cells": self.cells})

    def detector_cells(self) -> list:
        from stream.detector import Cell

        return [Cell(c[0], c[1], c[2], tuple(c[3]), c[4], c[5] if len(c) > 5 else None) for c in self.cells]


@dataclass(frozen=True)
class Marks:
    """finsent.scored, Kafka key MARKS_KEY, sent to every partition: each owned input partition's
    event-time mark. JSON: {"kind": "marks", "marks": {"finsent.news/0": [watermark epoch s | null, idle]}}"""

    marks: dict
    kind: ClassVar[str] = "marks"
    KEY: ClassVar[bytes] = b"~marks"

    def encode(self) -> bytes:
        return orjson.dumps({"kind": self.kind, "marks": self.marks})


def decode_scored(raw: bytes) -> Counts | Marks:
    """A finsent.scored message; `Invalid` for anything else (not JSON, another kind, a field missing)."""
    try:
        msg = orjson.loads(raw)
        if msg["kind"] == Counts.kind:
            return Counts(str(msg["key"]), list(msg["cells"]), msg.get("batch"))
        if msg["kind"] == Marks.kind:
            return Marks(dict(msg["marks"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise Invalid(f"not a finsent.scored record: {type(exc).__name__}: {exc}"[:300]) from None
    raise Invalid(f"not a finsent.scored record: kind {msg.get('kind')!r}")


ALERT_EVENTS = {"open": "opened", "escalate": "escalated", "resolve": "resolved"}


@dataclass(frozen=True)
class AlertRecord:
    """finsent.alerts, Kafka key = the aggregation key ("ticker:ACME"); also alert_event.payload in
    Postgres. alert_id, opened_at and resolved_at come from the alert row once it is written."""

    event: str  # opened | escalated | resolved
    state: str  # open | resolved
    revision: int
    key_type: str
    key: str
    alert_start: str  # ISO 8601 UTC
    window_start: str
    window_end: str
    n: float
    negatives: float
    expected_negatives: float
    baseline_rate: float
    baseline_n: float
    z: float
    p_value: float
    severity: str
    sample_event_ids: list
    # the window's negative stories, most copies first: [{"story_id", "copies", "sources"}] (alert.stories)
    stories: list = dataclasses.field(default_factory=list)
    alert_id: int | None = None
    opened_at: str | None = None
    resolved_at: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def encode(self) -> bytes:
        return orjson.dumps(self.as_dict())

    @classmethod
    def decode(cls, raw: bytes | str | dict) -> AlertRecord:
        msg = raw if isinstance(raw, dict) else orjson.loads(raw)
        try:
            return cls(**{f.name: msg[f.name] for f in dataclasses.fields(cls) if f.name in msg})
        except TypeError as exc:
            raise Invalid(f"not a finsent.alerts record: {exc}"[:300]) from None
