"""Company-name normalisation: legal suffixes, alias keys, and which names are also ordinary words.

Everything here is pure string logic shared by the directory (when it builds or loads a file) and
the linker (when it reads text), so that both sides agree on what a key is.
"""
from __future__ import annotations

import re
import unicodedata
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
# a trailing parenthetical: a share class ('(Class A)') or a qualifier an encyclopaedia adds to tell
# namesakes apart ('Rio Tinto (corporation)', 'Puma (brand)', 'Metso (2020-present)'); never written in text
_QUALIFIER_RE = re.compile(r"\s*\([^()]*\)\s*$")
_CLASS_RE = re.compile(r"\s*\((?:class|series)\s+\w\)\s*$", re.IGNORECASE)  # of those, a share class
# Words that say what a company does, not who it is: 'Hikma Pharmaceuticals' is written 'Hikma', 'Croda
# International' 'Croda', 'Tullow Oil' 'Tullow'. Only these are dropped for a short name; words that
# often end a name people write whole are not ('Ford Motor', 'Tyson Foods', 'Devon Energy', 'Lincoln
# National', 'Capital One Financial', 'American Airlines').
DESCRIPTORS = (
    "industries", "international", "technologies", "technology", "pharmaceuticals", "pharmaceutical",
    "pharma", "therapeutics", "biosciences", "laboratories", "resources", "mining", "oil", "oil & gas",
    "enterprises", "worldwide", "systems", "solutions", "brands",
)
_DESCRIPTOR_RE = re.compile(
    r"\s+(?:" + "|".join(re.escape(s) for s in sorted(DESCRIPTORS, key=len, reverse=True)) + r")$", re.IGNORECASE)
# German and Nordic letters as English text writes them: 'Deutsche Börse' is 'Deutsche Boerse' in a wire
# headline and 'Deutsche Borse' where the accent was dropped
_TRANSLIT = (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue"))
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
# A one-word short name derived by dropping a descriptor or a qualifier ('Powell', 'Oxford') that is
# this frequent (names of people and places are in the list too) needs the company's cashtag or
# legal name beside it; see needs_proof.
NAME_WORD_FREQ = 50


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
    out = _QUALIFIER_RE.sub("", name.strip())
    for _ in range(3):
        shorter = _SUFFIX_RE.sub("", out).strip(" ,")
        if shorter == out or len(shorter) < 2:
            break
        out = shorter
    return _LEADING_THE.sub("", out).strip() or name.strip()


def short_name(name: str) -> str:
    """'Hikma Pharmaceuticals PLC' -> 'Hikma'; a name that is nothing but descriptors stays whole."""
    short = strip_legal(name)
    shorter = short
    for _ in range(3):  # 'Teva Pharmaceutical Industries' -> 'Teva'
        shorter = _DESCRIPTOR_RE.sub("", shorter).strip(" ,&")
    if len(shorter) < 3 or is_acronym(shorter):  # 'PDF Solutions' -> 'PDF' is a file; ticker rules cover 'EOG'
        return short
    return shorter


def transliterations(alias: str) -> list[str]:
    """'Deutsche Börse' -> ['Deutsche Boerse', 'Deutsche Borse']; [] for a name with no such letter.
    Only accented letters change ('Brown–Forman' keeps its dash)."""
    if alias.isascii():
        return []
    spelled = alias
    for a, b in _TRANSLIT:
        spelled = spelled.replace(a, b)
    bare = "".join(_base_letter(c) for c in alias)
    return [x for x in dict.fromkeys((spelled, bare)) if x != alias]


def _base_letter(c: str) -> str:
    if c.isascii() or not c.isalpha():
        return c
    base = unicodedata.normalize("NFKD", c)[0]
    return base if base.isascii() else c


def name_aliases(name: str) -> list[str]:
    """The aliases a legal name implies: itself, without legal suffixes or a qualifier, without '.com',
    without a trailing descriptor ('Tullow Oil' -> 'Tullow'), and the short forms in plain ASCII
    letters ('Deutsche Börse' -> 'Deutsche Boerse')."""
    out = [name.strip()]
    short = strip_legal(name)
    for a in (short, _DOTCOM.sub("", short), short_name(name)):
        if a and a not in out and len(a) >= (2 if a == short else 3):
            out.append(a)
    out += [t for a in list(out) for t in transliterations(a)]
    return [a for a in dict.fromkeys(out) if len(key(a)) >= 2]


def needs_proof(name: str, alias: str) -> bool:
    """A one-word alias derived by more than dropping legal words (a descriptor, a qualifier) that is
    a word people say at all (Powell Industries -> 'Powell', Oxford Industries -> 'Oxford', Abbott
    Laboratories -> 'Abbott', Vertex Pharmaceuticals -> 'Vertex'): a person, a place or a word as
    often as the company, so it links only with the company's cashtag, ticker or legal name beside
    it. Brand-like coinages (Hikma, Croda, Regeneron) are not in the word list at all."""
    k = key(alias)
    if " " in k:
        return False
    if not _QUALIFIER_RE.search(name.strip()) or _CLASS_RE.search(name.strip()):
        plain = strip_legal(name)
        if k in {key(a) for a in [plain, *transliterations(plain)]}:
            return False  # the legal name's own short form: COMMON_WORD_FREQ decides ('Apple')
    return word_frequency(k) >= NAME_WORD_FREQ


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
