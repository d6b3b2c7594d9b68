"""Counts for the detector (issue 17, item 3): an event stored once is counted once, however
often a batch holds it; the worker's count records and the shared counting function agree."""

from datetime import datetime, timezone

import pytest

from models.runtime import Prediction
from stream.counting import count_cells
from stream.pipeline import count_records, row
from stream.records import NewsEvent

T0 = datetime(2026, 1, 5, 10, 0, 3, tzinfo=timezone.utc)


def neg(version="v"):
    return Prediction("M&A | Investments", 0.9, {}, "negative", {"negative": 0.9, "neutral": 0.05, "positive": 0.05},
                      -0.85, version)


def rows(n):
    return [row(NewsEvent(id=f"e{i}", source="wire", text=f"$ACME falls {i}", published_at=T0), neg(), T0, T0)
            for i in range(n)]


def cells(records, key):
    return next(rec["cells"] for k, rec in records if k == key)


def test_rows_sent_twice_in_one_batch_are_counted_once():
    batch = rows(8) + rows(8)  # the producer sent each of 8 events twice; Postgres stored 8 rows
    new = {("wire", f"e{i}") for i in range(8)}
    records = count_records(batch, new, slice_s=10)
    (cell,) = cells(records, "ticker:ACME")
    assert cell[1:3] == [8, 8]
    (topic_cell,) = cells(records, "topic:M&A | Investments")
    assert topic_cell[1:3] == [8, 8] and topic_cell[4] == {"ACME": [8, 8]}  # [items, negatives]


def test_only_rows_really_inserted_are_counted():
    records = count_records(rows(4), {("wire", "e1"), ("wire", "e3")}, slice_s=10)
    (cell,) = cells(records, "ticker:ACME")
    assert cell[1] == 2 and cell[3] == ["wire/e1", "wire/e3"]


def test_worker_counts_equal_the_shared_function_over_the_same_events():
    batch = rows(12)
    new = {("wire", f"e{i}") for i in range(12)}
    shared = count_cells([(T0.timestamp(), f"wire/e{i}", True, "M&A | Investments", ["ACME"]) for i in range(12)], 10)
    assert {k: rec["cells"] for k, rec in count_records(batch, new, 10)} == {k: list(v.values()) for k, v in shared.items()}


def test_shared_function_dedupes_and_caps_samples():
    items = [(25.0, f"id{i % 3}", i % 2 == 0, "Fed", ["X"]) for i in range(9)]
    out = count_cells(items, 10)
    assert out["topic:Fed"][2][1:3] == [3, 2] and out["ticker:X"][2][1] == 3
    many = count_cells([(5.0, f"n{i}", True, "Fed", []) for i in range(20)], 10, samples=5)
    assert many["topic:Fed"][0][1:4] == [20, 20, ["n0", "n1", "n2", "n3", "n4"]]


# -- stories (issue 20): copies of one story count as about one item ---------------------------

def story_items(n_copies: int, story: str = "wire/s0", at: float = 1000.0, negative: bool = True):
    """One story: its first item (novel) and n_copies - 1 copies, from alternating sources."""
    return [(at + i, f"{('wire', 'blog', 'social')[i % 3]}/{story}-{i}", negative, "M&A", ("ACME",), None,
             (story, i == 0, i + 1)) for i in range(n_copies)]


def test_copies_of_one_story_add_at_most_the_cap():
    from stream.counting import story_weight

    cells = count_cells(story_items(30), slice_s=100)  # all in one slice
    n, k = cells["ticker:ACME"][10][1:3]
    assert n == pytest.approx(2.0) and k == pytest.approx(2.0)  # 1 for the story + 10 copies at 0.1
    cells = count_cells(story_items(30), slice_s=100, copy_weight=0.05, copy_cap=0.5)
    assert cells["ticker:ACME"][10][2] == pytest.approx(1.5)
    assert story_weight(None) == story_weight(("s", True, 1)) == 1.0
    assert story_weight((None, None, None)) == 1  # a row stored with stories off
    assert story_weight(("s", False, 2)) == pytest.approx(0.1) and story_weight(("s", False, 12)) == 0.0


def test_different_stories_count_one_each_and_items_without_stories_as_before():
    items = [it for j in range(15) for it in story_items(1, story=f"wire/n{j}", at=1000.0 + j)]
    plain = [(1000.0 + j, f"wire/p{j}", True, "M&A", ("ACME",)) for j in range(7)]
    cell = count_cells(items + plain, slice_s=100)["ticker:ACME"][10]
    assert cell[1] == cell[2] == 22


def test_cells_carry_stories_with_their_copies_and_sources():
    items = story_items(12) + story_items(3, story="blog/s1", at=1020.0)
    cell = count_cells(items, slice_s=100, stories=True)["ticker:ACME"][10]
    assert cell[5] == {"wire/s0": [12, ["wire", "blog", "social"]], "blog/s1": [3, ["wire", "blog", "social"]]}
    assert cell[3] == ["wire/wire/s0-0", "wire/blog/s1-0"]  # one sample per story, not five copies
    assert len(count_cells(items, slice_s=100)["ticker:ACME"][10]) == 5  # without stories: the old shape


def test_a_topic_cell_carries_its_busiest_tickers_only():
    """A batch of spam naming 50 distinct cashtags an item made one topic count record of ~1 MB
    (Kafka's default record limit); a cell carries its SLICE_TICKERS busiest tickers, and the
    topic's n and k every item."""
    from stream.counting import SLICE_TICKERS

    items = [(100.0, f"spam/{i}", True, "Markets", tuple(f"S{i}_{j}" for j in range(50))) for i in range(200)]
    items += [(101.0, f"real/{i}", i % 2 == 0, "Markets", ("ACME",)) for i in range(10)]
    cell = count_cells(items, 10)["topic:Markets"][10]
    assert cell[1] == 210 and cell[2] == 205
    assert len(cell[4]) == SLICE_TICKERS and cell[4]["ACME"] == [10, 5]
