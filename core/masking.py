"""Masking of personal data in text before it is scored, stored or published.

    masker = Masker(("email", "phone"))      # the default (settings.mask)
    masker("Call +1 (212) 555-0100 or mail ir@acme.com")  → "Call [PHONE] or mail [EMAIL]"

Kinds: `email`, `phone`, `card` (13-19 digits in the usual groupings that pass the Luhn check)
and `handle` (@name → @user, the form the sentiment tweets were trained on). The patterns are
conservative on purpose: financial text is full of numbers (prices, amounts, dates, ranges,
share counts) and none of those may be masked; tests/test_masking.py pins both sides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

KINDS = ("email", "phone", "card", "handle")

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
# a candidate phone: optional +country, then digit groups split by space, dot, dash or
# parentheses; validated further in _phone (how many digits, group shapes, not a date)
PHONE = re.compile(r"(?<![\w$€£¥.,/+-])(\+\d{1,3}[ .-]?)?(\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{1,4}){1,5}(?![\w%$€£/-]|[.,]\d)")
CARD = re.compile(r"(?<![\w.,-])\d{4}(?:[ -]?\d{2,6}){2,4}(?![\w%]|[.,]\d)")
HANDLE = re.compile(r"(?<![\w@/.])@[A-Za-z0-9_]{1,30}\b(?!\.\w)")
NUMBERISH = re.compile(r"\d[\d ().+-]{6,}\d")  # a cheap gate: no phone or card without such a run
DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def luhn(number: str) -> bool:
    total, parity = 0, len(number) % 2
    for i, c in enumerate(number):
        d = int(c)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _phone(m: re.Match) -> bool:
    s, intl = m.group(0), m.group(1) is not None
    digits = _digits(s)
    if DATE.match(s.strip()):
        return False
    groups = [g for g in re.split(r"[ .()-]+", s.lstrip("+")) if g]
    if intl:  # +44 20 7946 0958, +33 1 23 45 67 89
        return 8 <= len(digits) <= 15
    seps = {c for c in s if c in " .-"}
    # national: (212) 555-0100, 212-555-0100, 212.555.0100, 1-800-555-0199 — ten or eleven
    # digits, a last group of four, one kind of separator (a "1 234 567 890" amount has none of 4)
    return (10 <= len(digits) <= 11 and len(groups[-1]) == 4 and len(seps) <= 1 + ("(" in s)
            and all(len(g) <= 4 for g in groups) and len(groups) >= 3)


def _card(m: re.Match) -> bool:
    digits = _digits(m.group(0))
    return 13 <= len(digits) <= 19 and luhn(digits)


class Masker:
    """Callable text → text with the chosen kinds masked; a no-op when no kind is chosen."""

    def __init__(self, kinds: Iterable[str] = ("email", "phone")):
        self.kinds = tuple(dict.fromkeys(kinds))
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown masking kind(s) {sorted(unknown)}; choose from {list(KINDS)}")

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def __call__(self, text: str) -> str:
        if not self.kinds:
            return text
        if "email" in self.kinds and "@" in text:
            text = EMAIL.sub("[EMAIL]", text)
        if NUMBERISH.search(text):
            if "card" in self.kinds:  # before phones: a card number also looks like digit groups
                text = CARD.sub(lambda m: "[CARD]" if _card(m) else m.group(0), text)
            if "phone" in self.kinds:
                text = PHONE.sub(lambda m: "[PHONE]" if _phone(m) else m.group(0), text)
        if "handle" in self.kinds and "@" in text:
            text = HANDLE.sub("@user", text)
        return text
