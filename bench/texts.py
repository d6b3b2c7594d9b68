"""A realistic length mix for benchmarks: finance tweets and headline-like sentences.

From the shared training files when they are present (the benchmark machine), else from the
project's own synthetic feed generator, so a benchmark never needs the data at run time.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path


def realistic_mix(data_dir: Path | None, n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    pool = _from_files(Path(data_dir)) if data_dir and Path(data_dir).exists() else []
    if not pool:
        from stream.simulate import synthetic_texts

        pool = synthetic_texts(max(n, 2000), seed)
    return [rng.choice(pool) for _ in range(n)]


def _from_files(d: Path) -> list[str]:
    texts = []
    for path in (d / "twitter_financial_news_sentiment/sent_train.csv", d / "twitter_financial_news_topic/topic_train.csv"):
        if path.exists():
            with open(path, encoding="utf-8") as fh:
                texts += [r["text"] for r in csv.DictReader(fh)]
    pb = d / "financial_phrasebank/Sentences_50Agree.txt"
    if pb.exists():
        texts += [line.rpartition("@")[0] for line in pb.read_text(encoding="utf-8").splitlines() if "@" in line]
    return texts
