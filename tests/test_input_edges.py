"""Input edges of the worker that pass decode and cost later: a text of up to 20,000 characters (the
input limit) naming companies thousands of times must not make one item a CPU bomb in the entity
path (models.entities: the linker's name rules and the clause scoping), which runs for every
scored item in the worker's thread while the batch, and every partition behind it, waits.

Before the fix (2-core machine, best of runs): the linker took 0.44-1.9 s on the 20,000-character
texts below (it scanned the text from its start for every ambiguous mention's sentence, and checked
every exchange span and every corroborating mention per name candidate), the clause scoping 1-8 s
on a few thousand characters and more than 30 s on a 20,000-character market wrap naming five
companies 400 times each (it scanned every boundary per pair of mentions and recounted every
piece's words, blanking every mention, after each merge: cubic). Now each takes 10-60 ms. The
bounds are loose (a loaded 2-core machine) but well below what the old code took."""

import time
from datetime import datetime, timezone

import orjson
import pytest

from models.entities import Directory, Linker
from models.entities.clauses import scopes
from models.runtime import Prediction
from stream.pipeline import BatchProcessor, Incoming
from stream.records import decode
from stream.watermark import PartitionClock

N = 20_000  # FINSENT_MAX_CHARS, the longest text decode accepts
BUDGET_S = 0.25  # one text through one step; the old code took 0.44 s or more on each text below


@pytest.fixture(scope="module")
def linker():
    return Linker(Directory.default())


def _best_of_two(f, *args):
    """The faster of two runs (the machine is shared): a bomb is slow in both."""
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = f(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


LINKER_TEXTS = {
    # an ambiguous name (Apple) in every sentence: each looked for its sentence's start from the text's start
    "ambiguous name per sentence": ". ".join(["Apple"] * (N // 7))[:N],
    # one long sentence of ambiguous names: each lower-cased and searched the whole sentence for a cue
    "ambiguous names in one sentence": " ".join(["Apple"] * (N // 6))[:N],
    # a capitalised word before a name: the same scan, once per mention
    "names after capitalised words": " ".join(["Tom Ford"] * (N // 9))[:N],
    # exchange-qualified tickers: every name candidate was checked against every exchange span
    "exchange prefixes": "NYSE:GM " * (N // 8),
}


@pytest.mark.parametrize("name", list(LINKER_TEXTS))
def test_linking_a_long_adversarial_text_is_not_quadratic(linker, name):
    text = LINKER_TEXTS[name]
    took, _ = _best_of_two(linker.link, text)
    assert took < BUDGET_S, f"{name}: {took:.2f} s to link one {len(text):,}-character text"


def test_linker_answers_are_unchanged_on_names_in_sentences(linker):
    """The indexed sentence rules give the answers of the scans they replace (a few pinned cases)."""
    got = {e.ticker for e in linker.link("Apple shares rose. Harrison Ford smiled. Target (TGT) fell 3%.")}
    assert got == {"AAPL", "TGT"}
    assert linker.link("I ate an apple pie. The Gap between them grew.") == []
    assert {e.ticker for e in linker.link("Shares fell...Apple rose 3% on NYSE: F news")} >= {"AAPL", "F"}


WRAP = ", ".join(["Apple Inc", "Microsoft Corp", "Tesla Inc", "Boeing Co", "Ford Motor"] * 400)  # 20,799 characters
CLAUSE_TEXTS = {  # (short enough that the old code fails in seconds, not minutes)
    # a market wrap: many companies, each named many times, commas between (4,000 characters: 1.9 s before)
    "many names, commas": WRAP[:4000],
    "two names, and": " and ".join(["Apple Inc", "Microsoft Corp"] * 1000)[:N],
    "cashtags, commas": ", ".join(["$AAPL", "$MSFT", "$TSLA"] * 2000)[:8000],
}


@pytest.mark.parametrize("name", list(CLAUSE_TEXTS))
def test_clause_scopes_of_a_long_text_with_many_mentions_are_not_quadratic(linker, name):
    text = CLAUSE_TEXTS[name]
    spans = [e.spans for e in linker.link(text)]
    assert len(spans) > 1 and sum(map(len, spans)) > 300
    took, out = _best_of_two(scopes, text, spans)
    assert took < BUDGET_S, f"{name}: {took:.2f} s to scope {sum(map(len, spans))} mentions"
    assert len(out) == len(spans)


def test_clause_scopes_answers_are_unchanged():
    assert scopes("Apple beats estimates, while Samsung slides", [[(0, 5)], [(29, 36)]]) == \
        ["Apple beats estimates", "Samsung slides"]
    assert scopes("Apple and Samsung slide", [[(0, 5)], [(10, 17)]]) == [None, None]
    # a piece with no word of its own joins its neighbour: the last one the one before it
    assert scopes("Apple rises; Samsung", [[(0, 5)], [(13, 20)]]) == [None, None]


class _ItemScorer:
    """The item's prediction only (no entity head): the worker's entity path without the model."""

    def predict(self, texts):
        return [Prediction("Stock Movement", 0.9, {}, "negative", {"negative": 0.8, "neutral": 0.1, "positive": 0.1},
                           -0.7, "stub") for _ in texts]


def test_one_adversarial_item_does_not_hold_the_batch_in_the_entity_path(linker):
    """BatchProcessor._entities (linking, scopes, keys, entity rows) for a batch holding one long
    text that names companies thousands of times, beside ordinary items: bounded, and every item
    keeps its keys."""
    now = datetime(2026, 1, 5, 10, tzinfo=timezone.utc).timestamp()
    texts = [WRAP[:6000], LINKER_TEXTS["ambiguous name per sentence"],
             "Acme shares plunge after fraud charges", "$TSLA slides while Ford rises"]
    items = [Incoming(orjson.dumps({"id": f"e{i}", "source": "wire", "text": t, "published_at": "2026-01-05T10:00:00Z"}),
                      None, "finsent.news", 0, i) for i, t in enumerate(texts)]
    p = BatchProcessor(_ItemScorer(), None, None, PartitionClock(30, 5), linker=linker, entity_min_relevance=0.5)
    good = [(i, decode(i.value, N, now)) for i in items]
    scored = [(i, e, pr) for (i, e), pr in zip(good, _ItemScorer().predict([e.text for _, e in good]))]
    took, (keys, rows_of) = _best_of_two(p._entities, scored)
    assert took < 4 * BUDGET_S, f"{took:.2f} s for the batch's entities"  # (6 s and 1.9 s before)
    assert set(keys) == {("wire", f"e{i}") for i in range(4)}
    assert {"AAPL", "MSFT", "TSLA", "BA", "F"} <= set(keys[("wire", "e0")])
    assert keys[("wire", "e3")] == ["F", "TSLA"]


def test_an_item_with_thousands_of_cashtags_names_at_most_fifty_tickers(linker):
    """A 20,000-character text of 3,000 distinct cashtags made 3,000 entity rows, rollup rows and
    detector keys from one message (the feed's `tickers` field is capped at 50, the text was not).
    Now an item names at most 50: its entities the most relevant, its tickers the first in the text."""
    from models.entities.linker import MAX_ENTITIES
    from stream.records import MAX_TICKERS

    tags = [f"${chr(65 + a)}{chr(65 + b)}{chr(65 + c)}" for a in range(26) for b in range(26) for c in range(5)]
    text = "Watch " + " ".join(tags[:3000])
    ents = linker.link(text)
    assert MAX_ENTITIES == 50 and len(ents) == MAX_ENTITIES
    assert [e.ticker for e in ents] == [t[1:] for t in tags[:MAX_ENTITIES]]  # equal relevance: text order
    raw = {"id": "spam-1", "source": "social", "text": text, "published_at": datetime.now(timezone.utc).isoformat()}
    event = decode(orjson.dumps(raw), N)
    assert MAX_TICKERS == 50 and event.all_tickers() == sorted(t[1:] for t in tags[:MAX_TICKERS])
    # a linked company named in the title still leads a crowded item
    crowded = linker.link("Apple Inc shares jump on earnings\n" + " ".join(tags[:200]), title_end=33)
    assert len(crowded) == MAX_ENTITIES and crowded[0].ticker == "AAPL"
