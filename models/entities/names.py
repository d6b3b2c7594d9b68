"""Company-name normalisation: legal suffixes, alias keys, and which names are also ordinary words.

Everything here is pure string logic shared by the directory (when it builds or loads a file) and
the linker (when it reads text), so that both sides agree on what a key is.
"""
from __future__ import annotations

import re
from functools import lru_cache

# Characters folded before matching; one character in, one out, so offsets in the folded text are
# offsets in the original.
_FOLD_PAIRS = (("\u2019", "'"), ("\u2018", "'"), ("\u02bc", "'"), ("\u2013", "-"), ("\u2014", "-"),
               ("\u2010", "-"), ("\u2011", "-"), ("\u00a0", " "))

LEGAL_SUFFIXES = (
    "incorporated", "inc", "corporation", "corp", "company", "co", "limited", "ltd", "plc", "llc",
    "l.p", "lp", "n.v", "nv", "s.a", "sa", "se", "ag", "a/s", "asa", "ab", "oyj", "spa", "s.p.a",
    "holdings", "holding", "group", "& co", "and company", "& company", "co., ltd", "the",
    "class a", "class b", "class c", "(the)",
)
_SUFFIX_RE = re.compile(
    r"(?:[\s,]+(?:" + "|".join(re.escape(s) for s in sorted(LEGAL_SUFFIXES, key=len, reverse=True))
    + r")\.?)+\s*$", re.IGNORECASE)
_CLASS_RE = re.compile(r"\s*\((?:class|series)\s+[a-z]\)\s*$", re.IGNORECASE)
_LEADING_THE = re.compile(r"^the\s+", re.IGNORECASE)
_DOTCOM = re.compile(r"\.com$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")

# Lower-case frequency (per the pyspellchecker English list, built from subtitles) at or above
# which a one-word name is also an ordinary word, or a name of something else (apple 24,670; meta 686;
# ford 861; amazon 539, the river; tesla 317, the inventor). Such names are linked only with
# corroborating context (see linker.py).
COMMON_WORD_FREQ = 300
# A name derived by stripping legal words ('Next plc' -> 'Next', 'City Holding' -> 'City') that is this
# common is not kept as an alias at all; only a curated or user-given alias may be such a word.
VERY_COMMON_WORD_FREQ = 10_000


def fold(text: str) -> str:
    """Typographic apostrophes/dashes to ASCII, length preserved. (str.replace per character present:
    str.translate takes a slow path on non-ASCII text: 17 µs for a 120-character tweet, this 0.6 µs.)"""
    for a, b in _FOLD_PAIRS:
        if a in text:
            text = text.replace(a, b)
    return text


def key(alias: str) -> str:
    """The automaton key of an alias: folded, lower-case, single spaces, `&amp;` as `&`."""
    return _SPACES.sub(" ", fold(alias).replace("&amp;", "&")).strip().lower()


def strip_legal(name: str) -> str:
    """'Apple Inc.' -> 'Apple'; 'The Walt Disney Company' -> 'Walt Disney'; 'Amazon.com, Inc.' -> 'Amazon.com'."""
    out = _CLASS_RE.sub("", name.strip())
    for _ in range(3):
        shorter = _SUFFIX_RE.sub("", out).strip(" ,")
        if shorter == out or len(shorter) < 2:
            break
        out = shorter
    return _LEADING_THE.sub("", out).strip() or name.strip()


def name_aliases(name: str) -> list[str]:
    """The aliases a legal name implies: itself, without legal suffixes, without '.com'."""
    out = [name.strip()]
    short = strip_legal(name)
    if short and short not in out:
        out.append(short)
    nodot = _DOTCOM.sub("", short)
    if nodot != short and len(nodot) >= 3:
        out.append(nodot)
    return [a for a in out if len(key(a)) >= 2]


@lru_cache(maxsize=1)
def _word_frequency() -> dict[str, int]:
    from spellchecker import SpellChecker  # a data file of ~600 kB; loaded only when a directory is built
    return SpellChecker(distance=1).word_frequency.dictionary


def word_frequency(word: str) -> int:
    return int(_word_frequency().get(word.lower(), 0))


def is_common_word(alias: str) -> bool:
    """A one-word alias that is also an ordinary English word (Apple, Target, Gap, Shell, Ford, Meta)."""
    k = key(alias)
    return " " not in k and word_frequency(k) >= COMMON_WORD_FREQ


def is_very_common_word(alias: str) -> bool:
    k = key(alias)
    return " " not in k and word_frequency(k) >= VERY_COMMON_WORD_FREQ


def is_acronym(alias: str) -> bool:
    """'SAP', 'IBM', 'HSBC': matched only when written in capitals (sap is tree sap)."""
    letters = [c for c in alias if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters) and " " not in alias.strip()
