"""Who each text is about: cashtags, feed tickers and company names, linked to a symbol directory.

    from models.entities import Directory, Linker
    linker = Linker(Directory.default())
    linker.link("Boeing grounds 737 MAX fleet; $AAPL flat", tickers=["BA"])
    # [Entity(ticker='BA', name='Boeing', relevance=0.86, spans=((0, 6),), sources=('tag', 'name')), ...]

One pass of an Aho-Corasick automaton (pyahocorasick) over the lower-cased text's letters and digits
finds every alias written as whole words (leftmost-longest); two regular expressions find cashtags
and capitalised tickers. Then rules:

- Boundaries: a match must start and end at a word boundary; '.com'-like continuations ('apple.com')
  and hyphen compounds with a lower-case word ('Meta-analysis') do not count for names that are
  also ordinary words.
- Tickers that are words ($ALL, $ON, $IT) count only as cashtags; a ticker written without '$'
  counts if the directory marks it `bare` (not a word, not a common acronym) and the text is not
  all capitals, or if written 'NYSE: TGT' or '(TGT)'. Share classes: BRK.A / BRK-B / $BRK.B.
- Acronym names (SAP, UPS, ING) count only written in capitals, except in all-capital text.
- Ordinary-word names (the directory's `ambiguous` aliases: Apple, Target, Gap, Visa, Shell, Block,
  Meta, Ford) need all of: written with a capital (unless the whole text has none, where they need a
  cashtag/tag of the same company); not a modifier of a common noun (the next word, unless it is a
  function word, a market verb or a company-attribute noun: 'Apple pie', 'target price', 'Visa
  applications', 'shell company'); not the head of a noun phrase ('the Gap between'); not after a
  capitalised word mid-sentence ('Harrison Ford'), nor after a given name in any case ('CEO Robert
  Ford on Q2'); not a verb after 'to' or a modal ('May Target 20000 Workers'); and corroboration:
  a cashtag/tag/unambiguous name of the same company, a legal word after it ('Gap Inc'), a market
  verb right after it ('Ford recalls'), a market word in the same sentence (shares, earnings, CEO,
  %), or another company named in the same sentence.
- Written otherwise: a hyphenated name with a space ('Snap On') is read as an ordinary-word name; a
  number-and-letter name written as an amount or a period is none ('$146.3M', '(3M/3M)'); in a text
  with capitals a several-word name in lower case needs its company named ('waste management system').
- Towns: a name followed by ', <US state>' where the phrase ends ('Hershey, Pa. resigned', 'Dover,
  Delaware closed') is the town, unless a cashtag, tag or ticker of the company is in the text.

Relevance (documented in README.md beside this file) combines how the entity was named, whether
it is named in the title (or first sentence), how often, and how many other entities share the text.
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import NamedTuple

import ahocorasick

from models.entities import names, rules
from models.entities.directory import Directory, normalize_ticker


@dataclass(frozen=True)
class Entity:
    ticker: str
    name: str | None                     # None: a cashtag or tag not in the directory
    relevance: float                     # [0, 1]
    spans: tuple[tuple[int, int], ...]   # [start, end) character offsets in the text given
    sources: tuple[str, ...] = ()        # how it was found: cashtag, tag, ticker, name

    def to_json(self) -> dict:
        """{ticker, name, relevance, spans: [[start, end], ...], sources: [...]} for JSON output."""
        return {"ticker": self.ticker, "name": self.name, "relevance": self.relevance,
                "spans": [list(s) for s in self.spans], "sources": list(self.sources)}


# Below this an entity is a passing mention (see README.md): a default for subscribers and the detector.
DEFAULT_MIN_RELEVANCE = 0.5


class Mention(NamedTuple):
    start: int
    end: int
    ticker: str
    kind: str              # cashtag | ticker | name | tag
    strict: bool = False   # an ordinary word derived from a legal name: needs its company named


# Weights of the relevance formula; README.md explains them.
KIND_WEIGHT = {"cashtag": 1.0, "tag": 1.0, "ticker": 0.9, "name": 0.8}
W_KIND, W_LEAD, W_COUNT = 0.25, 0.45, 0.30
COUNT_SATURATION = 3
# at most this many entities an item, the most relevant (the feed's `tickers` field has the same cap):
# a 20,000-character text can carry 3,000 distinct cashtags, each of which would become an entity
# row, a rollup row and a detector key of its own
MAX_ENTITIES = 50
SHORT_TEXT = 320  # characters: read as one context when corroborating an ordinary-word name

# ('$' first, then what may not stand before it: a pattern that opens with a literal is searched fast)
_CASHTAG = re.compile(r"\$(?<![\w$]\$)([A-Za-z][A-Za-z0-9]{0,9}(?:[./-][A-Za-z]{1,2})?)(?![\w])")
_UNKNOWN_CASHTAG = re.compile(r"^[A-Z]{1,6}(?:\.[A-Z]{1,2})?$")
_PARENS = re.compile(r"\(([A-Z][A-Z0-9]{0,5}(?:[./-][A-Z]{1,2})?)\)")
# 'NYSE: ' / 'STO:' and the ticker after it: a code-shaped word and a colon (one cheap pattern; the code is
# then looked up in rules.EXCHANGE_PREFIXES), then the ticker, and a Nordic class letter ('HEXA B)')
_EXCH = re.compile(r"\b(NYSE American|[A-Z][A-Za-z]{1,8})\s?:\s?(?=[A-Z])")
_EXCH_TICKER = re.compile(r"([A-Z][A-Z0-9]{0,5}(?:[./-][A-Z]{1,2})?)\b(?: ([A-Z])(?=\)))?")
# what every _EXCH match holds: a cheap test (a literal first) that skips the code search over texts
# whose only colons are web addresses' (most tweets)
_COLON_TICKER = re.compile(r":\s?[A-Z]")
# every character but an ASCII letter or digit to a NUL, one for one (`_alnum_only` below)
_WORD_BYTES = bytes(b if chr(b).isascii() and chr(b).isalnum() else 0 for b in range(256))


def _alnum_only(s: str) -> str:
    """s with each character that is not an ASCII letter or digit a NUL, offsets kept (a non-ASCII
    character is one '?' in the ASCII encoding, then a NUL)."""
    return s.encode("ascii", "replace").translate(_WORD_BYTES).decode("ascii")


def _leftmost_longest(m: tuple) -> tuple[int, int]:
    return m[0], -m[1]


# ', Pennsylvania' / ', Pa.' after a name, then the sentence goes on in lower case or stops: a town
# ('Hershey, Pa.-based' and ', Texas Instruments' are not)
_PLACE_AFTER = re.compile(r",\s*(?:" + "|".join(re.escape(s) for s in sorted(rules.US_STATES, key=len, reverse=True))
                          + r")(?=\s*$|\s*[,;:!?)]|\s+[a-z]|(?<=\.)\s|(?<=[a-z])\.)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'&.]*")
_NOT_PROSE = re.compile(r"https?://\S+|[#@$]\w+")
_SENT_END = re.compile(r"[.!?](?=\s|$)|\n|;|\s[-|]\s")
_NEXT_TOKEN = re.compile(r"\s*([A-Za-z0-9%$&][\w%&'.-]*|[^\w\s])?")
_PREV_TOKEN = re.compile(r"([\w'&.-]+)\s*$")


class Linker:
    """Build once per directory (a tenth of a second for 10,000 names); `link` is then thread-safe."""

    def __init__(self, directory: Directory, keep_unknown_cashtags: bool = True):
        self.directory = directory
        self.keep_unknown_cashtags = keep_unknown_cashtags
        self._sym = directory.symbols
        # one automaton for names and for tickers that may be written bare: key -> (name's ticker or '',
        # ordinary word?, acronym?, bare ticker or '')
        entries: dict[str, list] = {}
        spaced: list[tuple[str, list]] = []
        for s in directory.symbols.values():
            amb, strict, acr = set(s.ambiguous), set(s.strict), set(s.acronyms)
            for a in s.aliases:
                k = names.key(a)
                level = 2 if a in strict else int(a in amb)  # ordinary-word level: 0 no, 1 context, 2 its company named
                # 'AT&amp;T' as feeds escape it
                for variant in (k, k.replace("&", "&amp;")) if "&" in k else (k,):
                    if variant not in entries:
                        entries[variant] = [s.ticker, level, a in acr, ""]
                if "-" in k:
                    spaced.append((k.replace("-", " "), [s.ticker, max(level, 1), a in acr, ""]))
        # 'Coca Cola', 'Snap On', 'Rolls Royce': a hyphenated name written with a space, where no name
        # is written so. The words apart may be ordinary ('snap on'), so the spaced form is read as an
        # ordinary-word name: capitalised and in company context
        for k, v in spaced:
            entries.setdefault(k, v)
        for s in directory.symbols.values():
            if s.bare:
                for k in {s.ticker.lower(), s.ticker.lower().replace(".", "-"), s.ticker.lower().replace(".", "/")}:
                    entries.setdefault(k, ["", 0, False, ""])[3] = s.ticker
        # Keys are matched as whole words only: the automaton reads the text with every character that
        # is not an ASCII letter or digit turned into a NUL (`_alnum_only`), and each key is written the
        # same way between two NULs. Matching raw lower-case text reported every 'tt' in 'https' and
        # 'ing' in '-ing' (94 % of all matches in tweets), each rejected in Python. Keys that differ
        # only in punctuation ('at&t', 'at t') share a pattern: each pattern keeps its keys, longest
        # first, and a key with punctuation or non-ASCII letters is checked against the text itself.
        patterns: dict[str, list] = {}
        for k, v in entries.items():
            if not _alnum_only(k).strip("\0"):
                continue  # (no letter or digit: nothing to find)
            p = "\0" + _alnum_only(k).rstrip("\0") + "\0"
            patterns.setdefault(p, []).append((k, tuple(v), _alnum_only(k) == k))
        self._auto = ahocorasick.Automaton()
        for p, keys in patterns.items():
            keys.sort(key=lambda x: -len(x[0]))
            self._auto.add_word(p, (len(p) - 1, tuple(keys)))
        if len(self._auto):
            self._auto.make_automaton()
        self._issuer_tickers: dict[str, list[str]] = {}
        for s in directory.symbols.values():
            self._issuer_tickers.setdefault(s.issuer, []).append(s.ticker)

    # ---------- public ----------
    def link(self, text: str, tickers: list[str] | tuple[str, ...] | None = None,
             title_end: int | None = None) -> list[Entity]:
        """Entities of one text, most relevant first. `tickers`: the feed's tags; `title_end`: where
        the title ends when the text is 'title + body' (default: the end of the first sentence)."""
        t = text if text.isascii() else names.fold(text)
        low = t.lower()
        if len(low) != len(t):  # a character whose lower case is longer: fold it one by one
            low = "".join(c if len(c.lower()) != 1 else c.lower() for c in t)
        tags = [self._tag(x) for x in tickers if x and x.strip()] if tickers else []
        qualified, exch_spans = self._qualified(t) if ":" in t or "(" in t else ((), ())
        mentions = self._cashtags(t) if "$" in t else []
        if qualified:
            mentions += qualified
        found = self._matches(low)
        if found:
            strong = mentions + [Mention(-1, -1, tk, "tag") for tk in tags] if tags else mentions
            mentions += self._names(t, low, found, strong, exch_spans)  # (a feed tag corroborates names)
        return self._entities(t, mentions, tags, title_end)

    def link_many(self, texts, tickers=None) -> list[list[Entity]]:
        tickers = tickers or [None] * len(texts)
        return [self.link(x, tk) for x, tk in zip(texts, tickers)]

    def _tag(self, raw: str) -> str:
        """A feed's ticker: 'NASDAQ:AAPL', 'aapl', 'BRK-B'; a Reuters-style 'AAPL.O' becomes 'AAPL' when
        only the base is listed."""
        tk = normalize_ticker(raw.rpartition(":")[2])
        if tk not in self._sym and "." in tk and tk.split(".")[0] in self._sym:
            return tk.split(".")[0]
        return tk

    # ---------- cashtags and tickers ----------
    def _cashtags(self, t: str) -> list[Mention]:
        out = []
        for m in _CASHTAG.finditer(t):
            g = m.group(1)
            tk = g.upper() if g.isalnum() else normalize_ticker(g)
            if tk in self._sym or (self.keep_unknown_cashtags and _UNKNOWN_CASHTAG.match(tk)):
                out.append(Mention(m.start(), m.end(), tk, "cashtag"))
        return out

    def _qualified(self, t: str) -> tuple[list[Mention], list[tuple[int, int]]]:
        """Tickers written 'NYSE: TGT' or '(TGT)': these count even when the ticker is a word."""
        out, exch = [], []
        for code in (_EXCH.finditer(t) if ":" in t and _COLON_TICKER.search(t) else ()):
            suffix = rules.EXCHANGE_PREFIXES.get(code.group(1), "-")
            m = _EXCH_TICKER.match(t, code.end()) if suffix != "-" else None
            if m is None:
                continue  # 'Update: Apple ...': a word and a colon, not an exchange
            # 'NASDAQ: ' names the exchange, not Nasdaq Inc; after a foreign code the ticker is that
            # market's ('LON:TSCO'), never a US ticker written bare
            exch.append((code.start(), m.start() if suffix == "" else m.end()))
            if suffix is None:
                continue  # 'ASX:ALL' is Aristocrat Leisure in Sydney, not Allstate
            tk = normalize_ticker(m.group(1))
            cls = f"{tk}-{m.group(2)}{suffix}" if m.group(2) else ""
            if cls in self._sym:  # 'STO:HEXA B' -> HEXA-B.ST
                out.append(Mention(m.start(1), m.end(2), cls, "ticker"))
            elif f"{tk}{suffix}" in self._sym or (self.keep_unknown_cashtags and not m.group(2)
                                                  and _UNKNOWN_CASHTAG.match(f"{tk}{suffix}")):
                # ('NYSE: PINS' names its listing as plainly as '$PINS' does: kept when the directory
                # does not list it, as an unknown cashtag is)
                out.append(Mention(m.start(1), m.end(1), f"{tk}{suffix}", "ticker"))
        for m in (_PARENS.finditer(t) if "(" in t else ()):
            tk = normalize_ticker(m.group(1))
            if tk in self._sym and len(tk) >= 2 and not _defines_acronym(t, m.start(), m.group(1)):
                out.append(Mention(m.start(1), m.end(1), tk, "ticker"))
        return out, exch

    # ---------- names ----------
    def _names(self, t: str, low: str, found: list[tuple[int, int, tuple]], strong: list[Mention],
               exch_spans: list[tuple[int, int]]) -> list[Mention]:
        """The company names and bare tickers among the automaton's matches (`_matches`) that the
        rules let stand. `strong`: the text's cashtags, qualified tickers and the feed's tags."""
        tx, upper_text, n = _Text(t), _Lazy(t), len(low)
        exch_starts = [a for a, _ in exch_spans]  # (in text order, not overlapping: finditer's)
        mixed_case = t != low  # (a text with a capital: names in lower case there are words)
        plain, pending, short, towns = [], [], [], []
        for start, stop, (tk, amb, acr, bare) in found:
            if stop + 1 < n and low[stop] == "." and low[stop + 1].isalnum():
                continue  # apple.com, Amazon.de: a domain, not the name
            if start and low[start - 1] == "$":
                continue
            if exch_spans and (k := bisect_right(exch_starts, start)) and start < exch_spans[k - 1][1]:
                continue
            surface = t[start:stop]
            if surface[0].isdigit() and _QUANTITY.match(surface) and _a_quantity(t, start, stop):
                continue  # '$146.3M', '£3m', '(3M/3M)': an amount or a period, not 3M
            if tk and surface.islower() and mixed_case:
                if t[stop:stop + 1] == "…" or _UNIT.match(surface):
                    continue  # 'any sto… https://', 'accor…': a word the feed cut; '40 000 m3': a unit
                if " " in surface:
                    amb = 2   # 'the first solar oven', 'waste management system', 'brief senators on
                              # semiconductor chips': a phrase, unless the text names its company
            if tk and acr and not upper_text():
                if surface.replace("&amp;", "&").upper() != surface.replace("&amp;", "&"):
                    tk = ""   # 'sap', 'ups': the word, not the company
                amb = 0       # capitals in mixed-case text: an acronym, not the word
            if tk:            # a name wins its span: bare 'HP' is HP Inc, not Helmerich & Payne's ticker
                m = Mention(start, stop, tk, "name")
                if not amb and " " not in low[start:stop] and self._second_word_of_a_name(tx, m):
                    continue  # Mount Everest, Nikola Tesla: a one-word name inside a longer proper noun
                if self._another_name(tx, m):
                    continue  # Hexagon Resources, Charles River Associates, Amazon River
                if t[stop:stop + 1] == "," and _PLACE_AFTER.match(t, stop):
                    towns.append(m)  # Hershey, Pa.; Dover, Delaware
                    continue
                (pending if amb else plain).append(m._replace(strict=True) if amb == 2 else m)
            elif bare and surface.isupper():
                if len(bare.split(".")[0]) >= 4:      # NVDA, TSLA: not words, even in all-capital text
                    plain.append(Mention(start, stop, bare, "ticker"))
                elif not upper_text():                # GM, AMD, DEA: only in mixed case, with context
                    short.append(Mention(start, stop, bare, "ticker"))
        if short:  # 'DEA agent', 'IP portfolio', 'AAD Academy': a 2-3 letter ticker needs market context
            if any(x.kind != "name" for x in strong + plain) or len(short) > 1 or _has_cue(low):
                plain += short
        if pending:
            plain += self._resolve_ambiguous(tx, upper_text(), pending, strong + plain)
        if towns:  # the company's name after all where the text names it by cashtag, tag or ticker
            named = {self._sym[x.ticker].issuer for x in strong if x.ticker in self._sym}
            plain += [m for m in towns if self._sym[m.ticker].issuer in named]
        return plain

    def _matches(self, low: str) -> list[tuple[int, int, tuple]]:
        """Alias keys found in the lower-case text, leftmost-longest and not overlapping, that start
        and end at a word boundary (a letter or digit on neither side): (start, stop, entry)."""
        found = []
        if not len(self._auto):
            return found
        for end, (plen, keys) in self._auto.iter("\0" + _alnum_only(low) + "\0"):
            start = end - plen  # (the text is read one NUL in: the pattern's first NUL is at start)
            for k, entry, exact in keys:
                if exact or low.startswith(k, start):
                    found.append((start, start + len(k), entry))
                    break
        if len(found) > 1:
            found.sort(key=_leftmost_longest)
        out, last, n = [], 0, len(low)
        for start, stop, entry in found:
            if start < last:
                continue
            last = stop
            # a non-ASCII letter is a NUL to the automaton (and a key's last letters may be punctuation)
            if (start and low[start - 1].isalnum()) or (stop < n and low[stop].isalnum()):
                continue
            out.append((start, stop, entry))
        return out

    @staticmethod
    def _second_word_of_a_name(tx: "_Text", m: Mention) -> bool:
        """After a capitalised word mid-sentence (not a verb, cue or possessive), in sentence case."""
        t = tx.t
        prev = _prev_word(t[max(0, m.start - 40):m.start])
        if not prev or not prev[0].isupper() or prev.endswith(("'s", "'")):
            return False
        if prev.lower() in rules.GIVEN_NAMES:
            return True                      # 'CEO Jeremy Tesla': a person's name, in Headline Case too
        if prev.isupper():
            return False
        if prev.lower() in _PREV_OK or m.start - len(prev) - 1 <= tx.sentence_start(m.start):
            return False
        return not tx.mostly_title()

    def _own_tickers(self, ticker: str) -> frozenset:
        """The tickers of the issuer's classes and their roots, as text writes them in brackets."""
        return frozenset(x for tk in self._issuer_tickers.get(self._sym[ticker].issuer, ())
                         for x in (tk, tk.split(".")[0].split("-")[0]))

    def _another_name(self, tx: "_Text", m: Mention) -> bool:
        """The name is the first part of another name: a place ('Amazon River') or another company,
        where a capitalised word that ends company names follows ('Hexagon Resources', 'Charles River
        Associates') and is not in this company's own name. In Headline Case only where that word
        ends the name ('Hexagon Resources:', 'Altius Minerals Corp'), not 'Rio Tinto Mining Output
        Rises'. ('X & Y' is left alone: 'Hershey & Mondelez' is two companies.)"""
        t = tx.t
        after = t[m.end:m.end + 60]
        nxt = _next_word(after)
        if not nxt or not nxt[0].isupper() or after[:1] != " ":
            return False
        word = nxt.lower().rstrip(".,:;'’")
        if word in rules.PLACE_NEXT:
            return True
        if word not in rules.OTHER_COMPANY_NEXT or word in self._sym[m.ticker].name.lower().split():
            return False
        if not tx.mostly_title():
            return True
        rest = after[after.index(nxt) + len(nxt):]
        then = _next_word(rest)
        return not then or not then[0].isalpha() or then.lower().rstrip(".,") in rules.LEGAL_NEXT \
            or rest.lstrip()[:1] in "(:;,-|"

    def _resolve_ambiguous(self, tx: "_Text", upper_text: bool, pending: list[Mention],
                           sure: list[Mention]) -> list[Mention]:
        t = tx.t
        lower_text = not any(c.isupper() for c in t)
        title_text = upper_text or tx.mostly_title()
        sure_issuers = {self._sym[m.ticker].issuer for m in sure if m.ticker in self._sym}
        sure = _Sure(sure)
        out = []
        for m in pending:
            issuer = self._sym[m.ticker].issuer
            if issuer in sure_issuers:      # corroborated by a cashtag, ticker or unambiguous name
                out.append(m)
                continue
            if m.strict:                     # 'Employers added 200,000 jobs': only 'Employers Inc' or '(EIG)'
                if _legal_or_ticker_after(t, m, self._sym[m.ticker].name, self._own_tickers(m.ticker)):
                    out.append(m)
                continue
            if lower_text or not (t[m.start].isupper() or _has_inner_capital(t[m.start:m.end])):
                continue                     # 'apple pie', 'a block of shares'
            if self._is_company_use(tx, m, title_text, sure):
                out.append(m)
        return out

    def _is_company_use(self, tx: "_Text", m: Mention, title_text: bool, sure: "_Sure") -> bool:
        t = tx.t
        after = t[m.end:m.end + 40]
        before = t[max(0, m.start - 40):m.start]
        if after[:1] == "-" and after[1:2].islower() and _next_word(after[1:]) not in rules.AFFILIATION:
            return False                     # Meta-analysis, Apple-flavoured (not Tesla-backed)
        if before[-1:] == "-" and before[-2:-1].isalpha():
            return False                     # non-Apple
        possessive = after[:2].lower() in ("'s", "s'") or after[:1] == "'"
        nxt = _next_word(after[2:] if possessive else after)
        prev = _prev_word(before)
        sent_start = tx.sentence_start(m.start)
        if not possessive and nxt and nxt[0].isalpha():
            word = nxt.lower().rstrip(".,")
            # a lower-case word (or any word in Headline Case); 'iPhone' is a name, not a common noun
            modifier_candidate = title_text or nxt.islower()
            if modifier_candidate and word not in _NEXT_OK and not _past_tense(word) \
                    and not (word == "price" and _next_word(after[len(nxt) + 1:]) in ("target", "Target")):
                return False                 # Apple pie, target price, Visa applications, Shell company
        key = t[m.start:m.end].lower()
        if key in rules.VERB_NAMES and prev and not possessive and nxt and _verb_before(prev, nxt):
            return False                     # 'Set To Target 15% Cut', 'May Target 20000 Workers', 'could
                                             # block the deal' (not: 'sold to Target for', 'Can Ford Recover')
        if prev and prev[0].isupper() and prev.lower() in rules.GIVEN_NAMES and not sure.ends_at(m.start):
            return False                     # 'CEO Robert Ford on Q2 Results', 'Tom Ford' (in any case)
        if (prev and f"{prev.lower()} {key}" in rules.FIXED_PHRASES) or \
                (nxt and not possessive and f"{key} {nxt.lower()}" in rules.FIXED_PHRASES):
            return False                     # price target, Target Price, shell company, block trade
        if not possessive and nxt and nxt.lower() == "of":
            return False                     # Oracle of Omaha, a Block of shares, a Shell of its former self
        head_of_phrase = not possessive and (not nxt or not nxt[0].isalpha() or nxt.lower() in rules.FUNCTION_WORDS)
        if prev and prev.lower() in rules.DETERMINERS and head_of_phrase:
            return False                     # the Gap between, the Apple of my eye
        if (not title_text and prev and prev[0].isupper() and not prev.isupper() and m.start > sent_start
                and not prev.endswith(("'s", "'")) and prev.lower() not in _PREV_OK
                and not sure.ends_at(m.start)):
            return False                     # Harrison Ford, Tom Ford
        return self._corroborated(tx, m, nxt, possessive, sent_start, sure)

    def _corroborated(self, tx: "_Text", m: Mention, nxt: str | None, possessive: bool, sent_start: int,
                      sure: "_Sure") -> bool:
        t = tx.t
        word = (nxt or "").lower().rstrip(".,")
        if _legal_or_ticker_after(t, m):
            return True                      # Gap Inc, Target (TGT), Target (NYSE: TGT)
        if t[m.end:m.end + 1] == "-" and _next_word(t[m.end + 1:m.end + 20]) in rules.AFFILIATION:
            return True                      # Tesla-backed
        if nxt == ":" and m.start == sent_start:
            return True                      # 'Ford: Approaching An Inflection Point' (headline subject)
        # a short text (a tweet, a headline) is one context; a longer one is read sentence by sentence
        if len(t) <= SHORT_TEXT:
            sent_start, sent_end = 0, len(t)
        else:
            sent_end = tx.sentence_end(m.end)
        sentence = t[sent_start:sent_end].lower()
        if tx.has_cue(sent_start, sent_end, sentence):
            return True
        if not possessive and word in rules.MARKET_VERBS and not word.endswith("ing") and (
                word not in rules.MOVE_VERBS or any(c.isdigit() for c in sentence)):
            return True                      # Ford recalls; Apple unveils; Ford rises 3% (not: Phoenix rises,
                                             # nor a gerund: Apple picking)
        return sure.starts_within(sent_start, sent_end)

    # ---------- entities and relevance ----------
    def _entities(self, t: str, mentions: list[Mention], tags: list[str], title_end: int | None) -> list[Entity]:
        if not mentions and not tags:
            return []
        by: dict[str, list[Mention]] = {}
        if any(m.kind == "name" for m in mentions):
            explicit = {m.ticker for m in mentions if m.kind != "name"} | set(tags)
            for m in mentions:
                by.setdefault(self._class_for(m, explicit), []).append(m)
        else:
            for m in mentions:
                by.setdefault(m.ticker, []).append(m)
        for tk in tags:
            by.setdefault(tk, []).append(Mention(-1, -1, tk, "tag"))
        lead_end = title_end
        total = len(mentions) + len(tags)
        out = []
        for tk, ms in by.items():
            if len(ms) == 1:
                m = ms[0]
                spans, first, kinds = ((m.start, m.end),) if m.start >= 0 else (), m.start, (m.kind,)
            else:
                spans = tuple(sorted({(m.start, m.end) for m in ms if m.start >= 0}))
                first, kinds = min(m.start for m in ms), tuple(sorted({m.kind for m in ms}))
            n = len(spans) or 1
            kind = max(KIND_WEIGHT[k] for k in kinds)
            if first >= 0 and lead_end is None:
                lead_end = _sentence_end(t, 0)
            lead = 1.0 if first < 0 or first < lead_end else _body_lead(first, len(t))  # (a tag has no span)
            count = min(1.0, n / COUNT_SATURATION)
            rel = (W_KIND * kind + W_LEAD * lead + W_COUNT * count) * (0.5 + 0.5 * n / total)
            sym = self._sym.get(tk)
            out.append(Entity(tk, sym.name if sym else None, round(min(1.0, rel), 3), spans, kinds))
        if len(out) > 1:
            out.sort(key=_by_relevance)
        return out[:MAX_ENTITIES]

    def _class_for(self, m: Mention, explicit: set[str]) -> str:
        """A name goes to its company's primary class, or to the class the text names explicitly."""
        if m.kind != "name":
            return m.ticker
        s = self._sym[m.ticker]
        if m.ticker in explicit:
            return m.ticker
        for tk in self._issuer_tickers.get(s.issuer, ()):
            if tk in explicit:
                return tk
        if not s.primary:
            for tk in self._issuer_tickers.get(s.issuer, ()):
                if self._sym[tk].primary:
                    return tk
        return m.ticker


_PREV_OK = rules.FUNCTION_WORDS | rules.DETERMINERS | rules.MARKET_VERBS | rules.CUE_WORDS
_NEXT_OK = rules.FUNCTION_WORDS | rules.MARKET_VERBS | rules.NEXT_NOUNS | rules.LEGAL_NEXT


_TICKER_AFTER = re.compile(r" \((?:[A-Za-z ]+:\s?)?([A-Z.]{1,6})\)")


def _by_relevance(e: Entity) -> tuple:
    return -e.relevance, e.spans[0][0] if e.spans else -1, e.ticker


def _legal_or_ticker_after(t: str, m: Mention, own: str = "", own_tickers: frozenset = frozenset()) -> bool:
    """'Gap Inc', 'Employers Holdings', 'Target (TGT)', 'Target (NYSE: TGT)'. Given the company's own
    legal name (`own`), the word must be its legal form ('Orion Group' is not Orion S.A.), and given
    its tickers, the one in brackets must be one of them ('Growth Investor (TWGGX)' is a fund)."""
    tm = _TICKER_AFTER.match(t, m.end)
    if tm:
        return not own_tickers or tm.group(1).rstrip(".") in own_tickers
    nxt = _next_word(t[m.end:m.end + 20])
    word = nxt.lower().rstrip(".,") if nxt else ""
    if word not in rules.LEGAL_NEXT:
        return False
    if not own:
        return True
    forms = {rules.LEGAL_FORM.get(w.rstrip(".,"), w.rstrip(".,")) for w in own.lower().split()}
    return rules.LEGAL_FORM.get(word, word) in forms


# a name written like an amount or a period: a number and a one- or two-letter unit ('3M', '3i')
_QUANTITY = re.compile(r"\d+[A-Za-z]{1,2}$")
# a number and a magnitude in lower case: '3m', '3bn' (million, billion)
_MAGNITUDE = re.compile(r"\d+(?:k|m|b|bn|mn)$")
# a name in lower case that reads as a unit: 'm3', 'm2', 'kw2'
_UNIT = re.compile(r"[a-z]{1,2}\d{1,2}$")


def _a_quantity(t: str, start: int, stop: int) -> bool:
    """Whether a number-and-letter name ('3M') is a quantity where it stands: after a decimal point, a
    currency sign, a digit or a slash ('$146.3M', '£3m', '1,3M'), before a slash ('3M/3M', '3M/Y/Y'), alone in
    brackets ('Unemployment Rate (3M)'), or written in lower case with a magnitude's letter ('3m', '3bn';
    not '3i', which is written so)."""
    before, after = t[start - 1:start] if start else "", t[stop:stop + 1]
    if before and (before in ".,/$£€¥" or before.isdigit()):
        return True
    if after == "/" or (before == "(" and after == ")"):
        return True
    return _MAGNITUDE.match(t, start, stop) is not None


def _verb_before(prev: str, nxt: str) -> bool:
    """Whether a name that is also a verb, between `prev` and `nxt`, is the verb: after 'to' and before
    anything that does not go with a company ('To Target 15% Cut', not 'to Target for'); after a modal,
    only before its object, a figure or a determiner ('May Target 20000 Workers', 'could block the
    deal'), since a company after a modal is followed by its own verb ('Can Ford Recover')."""
    p, word = prev.lower(), nxt.lower().rstrip(".,")
    if p == "to":
        return word not in _NEXT_OK
    return p in rules.VERB_BEFORE and (nxt[0].isdigit() or nxt[0] == "$" or word in rules.DETERMINERS)


def _has_inner_capital(surface: str) -> bool:
    """'eBay', 'iPhone': a capital inside the word marks a name even after a lower-case first letter."""
    return any(c.isupper() for c in surface[1:])


def _past_tense(word: str) -> bool:
    """'Tesla sliced', 'Target raised': a past-tense verb, not a noun the name modifies."""
    return len(word) >= 5 and word.endswith("ed") and not word.endswith("eed")


def _body_lead(start: int, length: int) -> float:
    """Named first after the title: 0.5 near the top, falling to 0 at the end."""
    return 0.5 * (1.0 - start / max(length, 1))


def _defines_acronym(t: str, paren: int, token: str) -> bool:
    """'Continuing Education (CE)': the words before spell the letters, so it is no ticker."""
    words = re.findall(r"[A-Za-z][\w'-]*", t[max(0, paren - 80):paren])[-len(token):]
    return len(words) == len(token) and "".join(w[0] for w in words).upper() == token.upper()


def _has_cue(lower: str) -> bool:
    """A market word or a percent sign in lower-cased text."""
    return "%" in lower or any(w in rules.CUE_WORDS for w in _words(lower))


def _words(s: str) -> list[str]:
    return re.findall(r"[a-z0-9&%][a-z0-9&%'-]*", s)


def _next_word(s: str) -> str | None:
    m = _NEXT_TOKEN.match(s)
    w = m.group(1) if m and m.group(1) else None
    return None if w and w.lower() in ("http", "https", "www") else w  # a link ends the phrase


def _prev_word(s: str) -> str | None:
    m = _PREV_TOKEN.search(s)
    return m.group(1) if m else None


def _sentence_end(t: str, i: int) -> int:
    m = _SENT_END.search(t, i)
    return m.start() if m else len(t)


class _Lazy:
    """Whether the text is all capitals, computed on first use."""
    __slots__ = ("t", "v")

    def __init__(self, t: str):
        self.t, self.v = t, None

    def __call__(self) -> bool:
        if self.v is None:
            self.v = _mostly_upper(self.t)
        return self.v


def _mostly_upper(t: str) -> bool:
    """An all-capitals headline (links and cashtags aside): capitals say nothing about names there."""
    if "http" in t or "$" in t:
        t = _NOT_PROSE.sub("", t)
    up = len(t) - len(t.translate(_DROP_UPPER))
    lo = len(t) - len(t.translate(_DROP_LOWER))
    return up + lo >= 8 and up >= 0.7 * (up + lo)


class _Text:
    """A text with what the name rules ask of it computed once, not once per mention: where its
    sentences start and end, whether it is in Headline Case, which sentences hold a market cue. A
    text of 20,000 characters naming a company a few thousand times took seconds when each mention
    scanned the text from its start for its sentence (quadratic); these answers are the same."""
    __slots__ = ("t", "_starts", "_ends", "_title", "_cues")

    def __init__(self, t: str):
        self.t, self._starts, self._ends, self._title, self._cues = t, None, None, None, {}

    def _index(self) -> None:
        ms = list(_SENT_END.finditer(self.t))
        self._starts, self._ends = [m.start() for m in ms], [m.end() for m in ms]

    def sentence_start(self, i: int) -> int:
        """Where the sentence holding position i starts: the end of the last sentence break in
        t[:i] (a '.' just before i counts), then past the spaces, quotes and brackets that open it."""
        if self._ends is None:
            self._index()
        t, k = self.t, bisect_right(self._ends, i)  # the breaks wholly before i are the same in the text cut at i
        best = self._ends[k - 1] if k else 0
        if i and t[i - 1] in ".!?":  # and one more there: at the cut, '$' stands in for the space after it
            best = i
        return _OPENERS.match(t, best, i).end()

    def sentence_end(self, i: int) -> int:
        """_sentence_end(t, i), by bisection: where the first sentence break at or after i starts."""
        if self._ends is None:
            self._index()
        k = bisect_left(self._starts, i)
        if k and self._ends[k - 1] > i:  # a break ' - ' across i: a search from i may find one inside it
            return _sentence_end(self.t, i)
        return self._starts[k] if k < len(self._starts) else len(self.t)

    def mostly_title(self) -> bool:
        if self._title is None:
            self._title = _mostly_title(self.t)
        return self._title

    def has_cue(self, start: int, end: int, lower: str) -> bool:
        """_has_cue(lower), `lower` being t[start:end].lower(), once per sentence."""
        v = self._cues.get((start, end))
        if v is None:
            v = self._cues[start, end] = _has_cue(lower)
        return v


class _Sure:
    """The mentions that corroborate ambiguous names, indexed: which start in a span, which end at a
    position (a scan of them all per ambiguous mention was quadratic in a long text)."""
    __slots__ = ("starts", "ends")

    def __init__(self, ms: list[Mention]):
        self.starts = sorted(x.start for x in ms)
        self.ends = {x.end for x in ms}

    def starts_within(self, lo: int, hi: int) -> bool:
        """any(lo <= x.start < hi)"""
        k = bisect_left(self.starts, lo)
        return k < len(self.starts) and self.starts[k] < hi

    def ends_at(self, start: int) -> bool:
        """A mention ends at `start` or just before it."""
        return start in self.ends or start - 1 in self.ends


_OPENERS = re.compile(r"[ \t\"'(\[]*")
_DROP_UPPER = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DROP_LOWER = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyz")


def _mostly_title(t: str) -> bool:
    """Headline Case: capitals carry no information about proper nouns."""
    ws = [w for w in _WORD.findall(_NOT_PROSE.sub(" ", t)) if len(w) >= 4]
    return len(ws) >= 3 and sum(w[0].isupper() for w in ws) >= 0.75 * len(ws)
