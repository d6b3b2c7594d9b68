"""Label sets with stable string ids.

Topic ids follow the order of the Twitter Financial News topic release (`classes.txt`);
the position of a label is saved into every model's config, so the runtime never assumes it.

Room: shared by serving and training. See models/README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOPIC_NAMES: tuple[str, ...] = (
    "Analyst Update",
    "Fed | Central Banks",
    "Company | Product News",
    "Treasuries | Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy | Oil",
    "Financials",
    "Currencies",
    "General News | Opinion",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
    "M&A | Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
)

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")


def slug(name: str) -> str:
    """'Fed | Central Banks' -> 'fed_central_banks'; 'M&A | Investments' -> 'm_and_a_investments'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("&", "_and_")).strip("_")


TOPICS: tuple[str, ...] = tuple(slug(n) for n in TOPIC_NAMES)


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of string labels; index = model output position."""

    name: str
    labels: tuple[str, ...]

    def index(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"unknown {self.name} label {label!r}; known: {', '.join(self.labels)}") from None

    def __len__(self) -> int:
        return len(self.labels)


TOPIC = LabelSet("topic", TOPICS)
SENTIMENT = LabelSet("sentiment", SENTIMENTS)

# Per-file remaps from a source's raw label to our string id.
TWITTER_SENTIMENT_MAP = {"0": "negative", "1": "positive", "2": "neutral"}  # 0 Bearish, 1 Bullish, 2 Neutral
TWITTER_TOPIC_MAP = {str(i): t for i, t in enumerate(TOPICS)}
