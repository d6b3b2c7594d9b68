"""The stream worker with a scorer that costs nothing — for bench/pipeline.py's ceiling run only
(never a runtime option): it measures what the streaming layer itself (Kafka, decoding,
Postgres writes, counting, detection) can carry when the model is free.

    python bench/null_worker.py        # settings from the environment, like `finsent worker`

Labels come from a keyword rule so that surges in the simulated feed still look negative.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.settings import Settings  # noqa: E402
from models.runtime import Prediction  # noqa: E402
from stream.app import run_worker  # noqa: E402

NEGATIVE = re.compile(r"plunge|misses|tanks|probe|downgrade|layoffs|breaking down|recalls|resigns|lawsuit|fraud", re.I)


def _pred(sentiment: str, score: float) -> Prediction:
    probs = {"negative": 0.0, "neutral": 0.0, "positive": 0.0, sentiment: 1.0}
    return Prediction("Company | Product News", 1.0, {"Company | Product News": 1.0}, sentiment, probs, score,
                      "bench-null")


class NullScorer:
    version = "bench-null"
    NEG, NEU = _pred("negative", -1.0), _pred("neutral", 0.0)

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [self.NEG if NEGATIVE.search(t) else self.NEU for t in texts]

    def check(self) -> None:
        pass


if __name__ == "__main__":
    sys.argv = ["finsent-worker", "worker"]
    run_worker(Settings(), "WARNING", scorer=NullScorer())
