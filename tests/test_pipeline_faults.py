"""Issue 17, items 5 and 6, driven through BatchProcessor against a real PostgreSQL: poison
values are dead-lettered at decode instead of being retried at COPY forever, a dead letter
larger than the producer may send is cut to fit with a reference, and a panic of the Rust
tokenizer (a BaseException) dead-letters its text instead of escaping the agent."""

import asyncio
import hashlib

import pytest

from core.pg import libpq_dsn
from models.runtime import Scorer
from stream.pipeline import BatchProcessor, Incoming
from stream.sink import PostgresSink
from stream.watermark import PartitionClock
from tests.conftest import Recorder
from tests.test_pipeline_failures import items, sql

pytestmark = pytest.mark.slow


class Panic(BaseException):
    """Like pyo3_runtime.PanicException: not an Exception."""


class PanickyScorer:
    def __init__(self, real):
        self.real = real

    def predict(self, texts):
        if any("PANIC" in t for t in texts):
            raise Panic("tokenizer panicked: index out of bounds")
        return self.real.predict(texts)


@pytest.fixture(scope="module")
def scorer():
    return Scorer.from_artifact()


@pytest.fixture
async def proc(migrated_db, scorer):
    sink, pub = PostgresSink(libpq_dsn(migrated_db), max_backoff_s=0.2), Recorder()
    p = BatchProcessor(PanickyScorer(scorer), sink, pub, PartitionClock(30, 5), max_backoff_s=0.2,
                       run_blocking=lambda f, *a: asyncio.to_thread(f, *a), max_deadletter_bytes=50_000)
    p.dsn = libpq_dsn(migrated_db)
    yield p
    await sink.close()


async def test_published_at_out_of_range_is_dead_lettered_not_retried_forever(proc):
    batch = items(4) + items(1, 4, published_at="0001-01-01T00:00:00+01:00") + items(1, 5, published_at="1200-06-01T00:00:00Z")
    await asyncio.wait_for(proc.process(batch), 30)  # held forever before: COPY raised OverflowError, retried
    assert sorted(d.item.offset for d in proc.publisher.deadletters) == [4, 5]
    assert all("published_at" in d.reason and "out of range" in d.reason for d in proc.publisher.deadletters)
    assert (await sql(proc.dsn, "SELECT count(*) AS n FROM scored_event"))[0]["n"] == 4
    assert proc.sink.up


async def test_nul_in_title_is_dead_lettered_at_decode(proc):
    await asyncio.wait_for(proc.process(items(2) + items(1, 2, title="a\u0000b")), 30)
    (dead,) = proc.publisher.deadletters
    assert dead.item.offset == 2 and dead.reason == "NUL character in title"


async def test_oversize_dead_letter_is_cut_to_fit_with_a_reference(proc):
    big = b'{"id": "x", "text": "' + b"y" * 120_000 + b'"'  # not JSON, 120 kB
    await asyncio.wait_for(proc.process(items(1) + [Incoming(big, b"key", "finsent.news", 3, 77)]), 30)
    (dead,) = proc.publisher.deadletters
    assert len(dead.item.value) + len(dead.item.key) <= 50_000 and big.startswith(dead.item.value)
    h = dead.headers()
    assert h["truncated_from"] == b"120022" and h["original_sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert (h["source_topic"], h["source_partition"], h["source_offset"]) == (b"finsent.news", b"3", b"77")
    assert dead.reason.startswith("not JSON")


async def test_tokenizer_panic_dead_letters_the_text_and_stores_the_rest(proc):
    await asyncio.wait_for(proc.process(items(5) + items(1, 5, text="PANIC here")), 60)
    (dead,) = proc.publisher.deadletters
    assert dead.item.offset == 5 and dead.reason.startswith("model error: Panic: tokenizer panicked")
    assert (await sql(proc.dsn, "SELECT count(*) AS n FROM scored_event"))[0]["n"] == 5
