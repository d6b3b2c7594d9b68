"""Precision and recall of linking on a labelled set (JSON lines: text, expected tickers, feed tickers)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from models.entities.linker import Linker


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[tuple[str, list[str], list[str]]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def read_items(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def score(linker: Linker, items: list[dict]) -> Score:
    """Micro-averaged over (text, ticker) pairs; an error lists the text, expected and found tickers."""
    s = Score()
    for it in items:
        want = set(it["expected"])
        got = {e.ticker for e in linker.link(it["text"], tickers=it.get("tickers") or None)}
        s.tp += len(want & got)
        s.fp += len(got - want)
        s.fn += len(want - got)
        if want != got:
            s.errors.append((it["text"], sorted(want), sorted(got)))
    return s
