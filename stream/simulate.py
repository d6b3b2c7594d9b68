"""A realistic synthetic feed, written by the project (no external data at run time).

Headline- and tweet-like texts about real-looking tickers across the 20 topics, from news
wires and social sources, with timestamps; optionally a planted negative surge on one ticker.
Optionally (the demo's feed) a share of the wire items comes without the feed's `tickers` tag, so
only the company's name in the text says who it is about, and a share of the items names two
companies of opposite tone ("Pfizer beats estimates ..., while Boeing cuts its outlook").

    events = list(feed(n=5000, seed=1, surge=Surge(ticker="ACME", start=3000, count=120)))
    events = list(feed(n=5000, seed=1, untagged_share=0.3, pair_share=0.05))
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

COMPANIES = {
    "AAPL": "Apple", "MSFT": "Microsoft", "NVDA": "Nvidia", "AMZN": "Amazon", "TSLA": "Tesla", "JPM": "JPMorgan",
    "XOM": "Exxon", "BA": "Boeing", "PFE": "Pfizer", "NFLX": "Netflix", "DIS": "Disney", "KO": "Coca-Cola",
    "GS": "Goldman Sachs", "INTC": "Intel", "AMD": "AMD", "WMT": "Walmart", "CVX": "Chevron", "UBER": "Uber",
    "ACME": "Acme Corp", "META": "Meta",
}
NEWS_SOURCES = ("wire-a", "wire-b", "finblog")
SOCIAL_SOURCES = ("social-x", "forum")

NEGATIVE = [
    "{co} shares plunge after {co} cuts full-year guidance",
    "{co} misses earnings estimates as margins shrink; stock falls {pct}%",
    "${t} tanks {pct}% premarket after weak outlook",
    "{co} faces regulator probe over accounting practices",
    "Analysts downgrade {co} to sell, citing slowing demand",
    "{co} announces layoffs of {n},000 workers amid falling sales",
    "${t} breaking down hard, this is ugly",
    "{co} recalls products after safety failures, shares slide",
    "{co} CFO resigns unexpectedly; shares drop {pct}%",
    "Lawsuit alleges {co} misled investors, stock sinks",
]
POSITIVE = [
    "{co} beats estimates and raises guidance; shares jump {pct}%",
    "${t} ripping higher after record quarterly revenue",
    "Analysts upgrade {co} to buy with a raised price target",
    "{co} announces ${n} billion buyback and dividend increase",
    "{co} wins major contract, stock rallies {pct}%",
    "${t} breaking out to new all-time highs",
]
NEUTRAL = [
    "{co} to report quarterly results on Thursday",
    "{co} names new head of its cloud division",
    "${t} trading flat ahead of the Fed decision",
    "{co} schedules investor day for next month",
    "Fed holds rates steady, signals patience on cuts",
    "Treasury yields little changed as investors await jobs data",
    "Oil prices steady as OPEC+ weighs output plan",
    "Gold edges up as dollar softens",
    "{co} files for shelf offering of common stock",
    "Markets open mixed; S&P 500 hovers near record",
]
# two companies, opposite tone: {a} in the first clause, {b} in the second
PAIRS = [
    ("{a} beats estimates and raises guidance, while {b} cuts its full-year outlook", "positive", "negative"),
    ("{a} shares plunge after a profit warning; {b} rallies on record quarterly revenue", "negative", "positive"),
    ("{a} wins a major contract, but {b} misses earnings estimates and its stock falls {pct}%", "positive",
     "negative"),
    ("{a} faces a regulator probe over accounting practices as {b} announces a buyback of ${n} billion", "negative",
     "positive"),
]
# A planted surge is many different pieces of bad news, not one headline reposted: each surge item
# is its own story (core.stories clusters the ordinary templates above into a few stories per
# company, and copies of one story barely count: docs/stories.md). Item j of a surge reports
# SURGE_EVENTS[j] with SURGE_FALLOUT[j]; past len(SURGE_EVENTS) items the events come round again
# with other fallout: follow-ups, which may join the first report's story.
SURGE_EVENTS = [
    "{co} recalls two million heaters over fire risk",
    "{co} chief financial officer quits abruptly",
    "{co} misses quarterly revenue forecast by a wide margin",
    "credit agency cuts {co} bond rating to junk",
    "former employees file a class action against {co}",
    "chemical leak shuts the main {co} factory",
    "Pentagon cancels a large drone order placed with {co}",
    "{co} suspends its dividend as cash dwindles",
    "union calls a nationwide strike at {co} plants",
    "{co} auditor raises going concern doubts",
    "hackers steal millions of {co} customer records",
    "short seller accuses {co} of inflating sales",
    "{co} slashes full year guidance on weak demand",
    "{co} bondholders reject the restructuring proposal",
    "European Commission fines {co} over antitrust violations",
    "{co} delays its flagship launch indefinitely",
    "fire destroys a {co} distribution warehouse",
    "justice department subpoenas {co} executives",
    "{co} writes down its acquisition of a startup",
    "largest customer drops {co} as supplier",
    "{co} halts production after a supplier bankruptcy",
    "whistleblower claims {co} hid product defects",
    "{co} loses patent case and owes royalties",
    "banks pull a credit line from {co}",
    "{co} board ousts the chief executive",
    "{co} admits accounting errors going back years",
    "tax authorities raid {co} offices",
    "{co} shuts stores across three countries",
    "drug trial fails for {co} lead candidate",
    "regulators block the {co} merger",
    "{co} warns of a first annual loss in decades",
    "outage knocks {co} services offline for a day",
]
SURGE_FALLOUT = [
    "shares plunge {pct}%", "stock slides to a six year low", "investors flee as the selloff deepens",
    "traders dump the stock before the bell", "analysts slash price targets", "the stock crashes {pct}% at the open",
    "bonds tumble alongside the equity", "market value shrinks by billions", "peers fall in sympathy",
    "losses wipe out this year's gains", "shares sink {pct}% in heavy selling", "the share price halves within hours",
    "stock tanks as downgrades pile up", "shares tumble to the lowest since 2009", "the stock drops {pct}% premarket",
    "shares slump as investors bail", "the selloff erases billions in value", "stock falls for a fifth straight day",
    "shares nosedive on the news", "the stock plummets {pct}% by midday", "shares crater as panic spreads",
    "the equity sheds a third of its value", "stock hits a record low", "shares skid {pct}% after hours",
    "worst trading day in a decade for the stock", "shares collapse as lenders balk", "the stock sinks below its IPO price",
    "investors dump shares en masse", "shares fall sharply in Europe too", "stock slumps as outlook darkens",
    "shares retreat {pct}% on heavy losses", "the stock is punished by the market",
]
TWEET_TAILS = ("", " https://t.co/{code}", " #stocks", " 📉", " 📈", " $SPY")


@dataclass(frozen=True)
class Surge:
    """Plant `count` negative items about `ticker` starting at event number `start`."""

    ticker: str = "ACME"
    start: int = 0
    count: int = 100


def surge_headline(j: int, ticker: str, pct: int = 10) -> str:
    """Surge item j's headline: its own story (SURGE_EVENTS, SURGE_FALLOUT)."""
    event = SURGE_EVENTS[j % len(SURGE_EVENTS)].format(co=COMPANIES[ticker])
    fallout = SURGE_FALLOUT[(j + j // len(SURGE_EVENTS)) % len(SURGE_FALLOUT)].format(pct=pct)
    return f"{event[0].upper()}{event[1:]}; {fallout}"


def _surge_text(rng: random.Random, j: int, ticker: str, social: bool) -> str:
    """A post names its ticker by cashtag. Drawn after the ordinary text, so the random stream of
    the rest of the feed is unchanged."""
    text = surge_headline(j, ticker, rng.randint(2, 19))
    return f"${ticker} {text}" if social else text


def _text(rng: random.Random, templates: list[str], ticker: str, social: bool) -> tuple[str, list[str]]:
    """The text and the tickers a news wire would tag it with (cashtags speak for themselves)."""
    template = rng.choice(templates)
    text = template.format(co=COMPANIES[ticker], t=ticker, pct=rng.randint(2, 19), n=rng.randint(1, 20))
    if social and "{co}" in template and rng.random() < 0.7:
        text = f"${ticker} {text}"  # posts name their ticker by cashtag
    if social:
        text += rng.choice(TWEET_TAILS).format(code="".join(rng.choices("abcdefghijkLMNOPQ0123456789", k=10)))
    return text, ([ticker] if "{co}" in template else [])


def _pair(rng: random.Random, social: bool, tagged: bool, avoid: str) -> tuple[str, list[str]]:
    """A two-company item (PAIRS) about two named companies other than `avoid` (the surging one)."""
    a, b = rng.sample([t for t in COMPANIES if t != avoid], 2)
    template = rng.choice(PAIRS)[0]
    text = template.format(a=COMPANIES[a], b=COMPANIES[b], pct=rng.randint(2, 19), n=rng.randint(1, 20))
    return text, ([a, b] if tagged and not social else [])


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    return [e["text"] for e in feed(n, seed)]


def feed(n: int, seed: int = 0, surge: Surge | None = None, start: datetime | None = None,
         spacing_s: float = 0.5, prefix: str = "sim", untagged_share: float = 0.0, pair_share: float = 0.0):
    """Yield `n` events (dicts in the input-topic contract); ids are unique per (prefix, seed).

    `untagged_share`: wire items (outside the surge) sent without their `tickers` tag; `pair_share`:
    items (outside the surge) replaced by a two-company item of opposite tone (PAIRS). Both draw
    from their own random stream, so the rest of the feed is the same as without them."""
    rng = random.Random(seed)
    extra = random.Random(seed * 104729 + 11)
    t0 = start or datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)
    for i in range(n):
        in_surge = surge is not None and surge.start <= i < surge.start + surge.count
        ticker = surge.ticker if in_surge else rng.choice(list(COMPANIES))
        templates = NEGATIVE if in_surge else rng.choices((NEGATIVE, NEUTRAL, POSITIVE), weights=(2, 5, 3))[0]
        social = rng.random() < 0.5
        source = rng.choice(SOCIAL_SOURCES if social else NEWS_SOURCES)
        text, tickers = _text(rng, templates, ticker, social)
        if in_surge:
            text = _surge_text(rng, i - surge.start, ticker, social)
        untagged, paired = extra.random() < untagged_share, extra.random() < pair_share
        if not in_surge and paired:
            text, tickers = _pair(extra, social, not untagged, surge.ticker if surge else "")
        elif not in_surge and untagged:
            tickers = []  # a wire without tags: the name in the text is all there is
        yield {
            "id": f"{prefix}-{seed}-{i}",
            "source": source,
            "text": text,
            "published_at": (t0 + timedelta(seconds=i * spacing_s)).isoformat(),
            **({} if social else {"url": f"https://news.example/{seed}/{i}"}),
            **({"tickers": tickers} if tickers and not social else {}),
        }
