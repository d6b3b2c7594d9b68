"""Masking of personal data before scoring/storage: what must be masked and, just as much,
the numbers of financial text that must not be."""

import pytest

from core.masking import Masker, luhn

ALL = Masker(("email", "phone", "card", "handle"))


@pytest.mark.parametrize("text, masked", [
    ("Contact ir@acme-corp.com for details", "Contact [EMAIL] for details"),
    ("mail John.Smith+ir@mail.example.co.uk now", "mail [EMAIL] now"),
    ("Call +1 (212) 555-0100 today", "Call [PHONE] today"),
    ("call 212-555-0100.", "call [PHONE]."),
    ("hotline (212) 555-0100", "hotline [PHONE]"),
    ("ring 212.555.0100 or 1-800-555-0199", "ring [PHONE] or [PHONE]"),
    ("UK desk +44 20 7946 0958", "UK desk [PHONE]"),
    ("Paris +33 1 23 45 67 89", "Paris [PHONE]"),
    ("card 4111 1111 1111 1111 leaked", "card [CARD] leaked"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("amex 3782 822463 10005", "amex [CARD]"),
    ("thanks @jane_doe for the tip", "thanks @user for the tip"),
])
def test_personal_data_is_masked(text, masked):
    assert ALL(text) == masked


@pytest.mark.parametrize("text", [
    "Revenue rose to $1,234,567,890 in Q3",
    "ACME sold 12 345 678 shares at 101.25",
    "EPS of 1.234 vs 1.10 expected; guidance 2025-2026",
    "Filed on 2026-01-05, effective 01/05/2026",
    "Order 1234567890123456 shipped",          # 16 digits that fail the Luhn check
    "4111 1111 1111 1112 is not a card",       # Luhn fails
    "Index at 4,512.33, down 1.2% ($AAPL $MSFT)",
    "Price target raised from 150 to 175.50",
    "Q3 2026 results: 10-K filed, CUSIP 037833100",
    "ISIN US0378331005 and phone-like 555-0100",  # a 7-digit local number is left alone
    "Deal valued at 3.5 billion, 2,000,000 units",
    "meet at 10:30 on 12.05.2026",
    "email me at the office",
])
def test_financial_numbers_are_not_masked(text):
    assert ALL(text) == text


def test_only_the_chosen_kinds_are_masked_and_default_is_email_and_phone():
    text = "@ceo says call 212-555-0100, mail a@b.io, card 4111111111111111"
    assert Masker()(text) == "@ceo says call [PHONE], mail [EMAIL], card 4111111111111111"
    assert Masker(())(text) == text and not Masker(())


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown masking kind"):
        Masker(("email", "ssn"))


def test_luhn():
    assert luhn("4111111111111111") and luhn("378282246310005") and not luhn("4111111111111112")
