"""Clause scoping: which part of a text speaks about which entity.

    scopes("Apple beats estimates, while Samsung slides", [[(0, 5)], [(29, 36)]])
    # -> ["Apple beats estimates", "Samsung slides"]

Between two consecutive mentions of different entities the text is cut at the strongest clause
boundary that lies between them (a sentence end, ';', '|', a dash, a contrastive conjunction such
as while / but / whereas, then weaker ones: as, after, and, a comma), the last one of that
strength when several tie, so a clause that starts before its company's name ("shares of Samsung
slide") stays whole. Text before the first mention goes with the first entity. An entity's scope
is the text of the pieces holding its mentions; an entity that shares its only piece with another
entity (no boundary between them: "Apple and Samsung slide") has no scope of its own (None), and
the caller reads the whole text for it. Pure Python, no model; linear in the text and its mentions
up to a log factor (a 20,000-character text naming companies a thousand times took seconds when each
step scanned every boundary, piece and mention).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

# (pattern, strength): higher cuts first. Each pattern matches the whole boundary, the cut keeps
# the text before it in the left piece and drops the boundary words themselves.
_BOUNDARIES: tuple[tuple[str, int], ...] = (
    (r"[.!?]+[\"')\]]*\s+(?=\S)", 5),                          # sentence end
    (r"\s*(?:;|\|)\s*", 5),
    (r"\s+[-\u2013\u2014]+\s+|\s*[\u2013\u2014]\s*", 4),      # a dash between words
    (r",?\s+(?:while|whereas|but|however|meanwhile|although|though|yet|even as|whilst)\b,?\s*", 4),
    (r",?\s+(?:as|after|since|despite|and|with|amid)\s+(?=\S)", 2),
    (r"\s*,\s+|\s*:\s+", 2),
)
_PATTERN = re.compile("|".join(f"(?P<b{i}>{p})" for i, (p, _) in enumerate(_BOUNDARIES)), re.IGNORECASE)
_STRENGTH = [s for _, s in _BOUNDARIES]


def boundaries(text: str) -> list[tuple[int, int, int]]:
    """(start, end, strength) of every clause boundary in text, left to right, non-overlapping."""
    out = []
    for m in _PATTERN.finditer(text):
        k = next(i for i, g in enumerate(m.groups()) if g is not None)
        out.append((m.start(), m.end(), _STRENGTH[k]))
    return out


def cut_points(text: str, mentions: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """`mentions`: (start, end, entity index) sorted by start. Per pair of consecutive mentions of
    different entities, the boundary (start, end) to cut at; none where no boundary lies between."""
    bounds = boundaries(text)
    starts, ends = [x[0] for x in bounds], [x[1] for x in bounds]  # both ascending: boundaries do not overlap
    cuts = []
    for (_, a_end, a), (b_start, _, b) in zip(mentions, mentions[1:]):
        if a == b:
            continue
        # the boundaries that lie between: bounds[lo:hi] (consecutive pairs' ranges do not overlap)
        lo, hi = bisect_left(starts, a_end), bisect_right(ends, b_start)
        if lo < hi:
            k = max(range(lo, hi), key=lambda j: (bounds[j][2], j))  # the strongest, the last of ties
            cuts.append((bounds[k][0], bounds[k][1]))
    return cuts


def scopes(text: str, entity_spans: Sequence[Sequence[Sequence[int]]]) -> list[str | None]:
    """Per entity (entity_spans[i] = its [start, end) spans), the text of its own clauses, or None
    where it has none (no spans, or every piece holding it also holds another entity)."""
    mentions = sorted((int(s), int(e), i) for i, spans in enumerate(entity_spans) for s, e in spans)
    if not mentions:
        return [None] * len(entity_spans)
    pieces = _pieces(text, cut_points(text, mentions), mentions)
    owners: list[set[int]] = [set() for _ in pieces]
    piece_ends = [b for _, b in pieces]
    for s, _, i in mentions:  # the first piece that ends after the mention starts, else the last
        owners[min(bisect_right(piece_ends, s), len(pieces) - 1)].add(i)
    held: list[list[int]] = [[] for _ in entity_spans]  # per entity, its pieces in text order
    for k, o in enumerate(owners):
        for i in o:
            held[i].append(k)
    out: list[str | None] = []
    for i in range(len(entity_spans)):
        mine = held[i]
        if not mine or any(len(owners[k]) > 1 for k in mine):
            out.append(None)
            continue
        out.append(" ".join(text[pieces[k][0]:pieces[k][1]].strip() for k in mine).strip() or None)
    return out


MIN_WORDS = 1  # a piece needs a word besides its names to say something ("Apple and Samsung slide": no cut)


def _pieces(text: str, cuts: list[tuple[int, int]], mentions) -> list[tuple[int, int]]:
    """The text between cuts; a cut that leaves a piece with fewer than MIN_WORDS words of its own
    (besides names) is dropped, so that piece reads with its neighbour: the first such piece from the
    left takes in the next one (the cut after it goes), the last one joins the one before it."""
    bounds = [0] + [x for c in cuts for x in c] + [len(text)]
    pieces = list(zip(bounds[::2], bounds[1::2]))
    words = _WordCount(text, mentions)
    out: list[tuple[int, int]] = []
    a, b = pieces[0]
    for nxt in pieces[1:]:
        if words(a, b) < MIN_WORDS:
            b = nxt[1]  # (the cut between them goes, its boundary words with it)
        else:
            out.append((a, b))
            a, b = nxt
    while out and words(a, b) < MIN_WORDS:
        a = out.pop()[0]
    out.append((a, b))
    return out


class _WordCount:
    """Words ([A-Za-z0-9]+) in text[a:b] with the mentions blanked out, in constant time per piece."""

    def __init__(self, text: str, mentions):
        chars = list(text)
        for s, e, _ in mentions:
            chars[max(s, 0):max(e, 0)] = " " * len(chars[max(s, 0):max(e, 0)])
        plain = "".join(chars)
        self.alnum = [c.isascii() and c.isalnum() for c in plain]
        self.starts = [0]  # self.starts[k]: the words that start before k
        prev = False
        for c in self.alnum:
            self.starts.append(self.starts[-1] + (c and not prev))
            prev = c

    def __call__(self, a: int, b: int) -> int:
        if a >= b:
            return 0
        return self.starts[b] - self.starts[a + 1] + self.alnum[a]
