"""The scoring step's failure paths, driven directly (no Kafka) against a real PostgreSQL:
nothing is acked unwritten — every item ends up stored once or dead-lettered with its reason,
and a batch that cannot be stored is held (process() does not return) until it can."""

import asyncio

import asyncpg
import orjson
import pytest

from core.pg import libpq_dsn
from models.runtime import Scorer
from stream.pipeline import BatchProcessor, Incoming
from stream.sink import PostgresSink
from stream.watermark import PartitionClock
from tests.conftest import Recorder

pytestmark = pytest.mark.slow


def items(n, start=0, text="Acme shares plunge after fraud charges", **kw):
    out = []
    for i in range(start, start + n):
        ev = {"id": f"e{i}", "source": "wire-a", "text": f"{text} #{i}", "published_at": "2026-01-05T10:00:00Z",
              "tickers": ["ACME"], **kw}
        out.append(Incoming(orjson.dumps(ev), None, "finsent.news", 0, i))
    return out


class FlakyScorer:
    """Fails texts containing POISON; fails everything while `broken` is set."""

    def __init__(self, real):
        self.real, self.broken, self.calls = real, False, 0

    def predict(self, texts):
        self.calls += 1
        if self.broken:
            raise RuntimeError("ONNXRuntimeError: session broken")
        if any("POISON" in t for t in texts):
            raise RuntimeError("ONNXRuntimeError: bad input")
        return self.real.predict(texts)


@pytest.fixture(scope="module")
def scorer():
    return Scorer.from_artifact()


@pytest.fixture
async def proc(migrated_db, scorer):
    sink, pub = PostgresSink(libpq_dsn(migrated_db), max_backoff_s=0.2), Recorder()
    p = BatchProcessor(FlakyScorer(scorer), sink, pub, PartitionClock(30, 5), max_backoff_s=0.2,
                       run_blocking=lambda f, *a: asyncio.to_thread(f, *a))
    p.dsn = libpq_dsn(migrated_db)
    yield p
    await sink.close()


async def sql(dsn, q, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await (conn.fetch(q, *args) if args or q.lstrip().upper().startswith("SELECT") else conn.execute(q))
    finally:
        await conn.close()


async def test_redelivered_batch_is_absorbed_not_dead_lettered_and_counted_once(proc):
    await proc.process(items(20))
    await proc.process(items(20))  # a rebalance re-reads from the committed offset
    rows = await sql(proc.dsn, "SELECT count(*) AS n FROM scored_event")
    roll = await sql(proc.dsn, "SELECT n FROM event_rollup_minute WHERE key_type='ticker' AND key='ACME'")
    assert (rows[0]["n"], roll[0]["n"]) == (20, 20)
    assert proc.publisher.deadletters == []
    batches = [orjson.loads(v) for _, v in proc.publisher.records]
    assert sum(c[1] for b in batches if b["key"] == "ticker:ACME" for c in b["cells"]) == 20  # counts only new rows


async def test_model_error_on_one_item_dead_letters_it_and_stores_the_rest(proc):
    batch = items(9) + items(1, 9, text="POISON text")
    (await proc.process(batch))
    assert [d.item.offset for d in proc.publisher.deadletters] == [9]
    assert proc.publisher.deadletters[0].reason.startswith("model error: RuntimeError")
    assert (await sql(proc.dsn, "SELECT count(*) AS n FROM scored_event"))[0]["n"] == 9


async def test_broken_model_holds_the_batch_until_it_works_again(proc):
    proc.scorer.broken = True

    task = asyncio.create_task(proc.process(items(5)))
    await asyncio.sleep(1.0)
    assert not task.done() and "session broken" in proc.health.model_error
    proc.scorer.broken = False
    await asyncio.wait_for(task, 10)
    assert proc.publisher.deadletters == [] and proc.health.model_error == ""
    assert (await sql(proc.dsn, "SELECT count(*) AS n FROM scored_event"))[0]["n"] == 5


async def test_row_postgres_refuses_is_dead_lettered_with_the_reason_others_stored(proc):
    await sql(proc.dsn, """CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
        IF NEW.text LIKE 'REFUSE%' THEN RAISE EXCEPTION 'refused by rule' USING ERRCODE = '22023'; END IF;
        RETURN NEW; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse BEFORE INSERT ON scored_event FOR EACH ROW EXECUTE FUNCTION refuse()""")
    (await proc.process(items(6) + items(1, 6, text="REFUSE me")))
    assert [d.item.offset for d in proc.publisher.deadletters] == [6]
    assert "postgres rejected" in proc.publisher.deadletters[0].reason and "refused by rule" in proc.publisher.deadletters[0].reason
    assert (await sql(proc.dsn, "SELECT count(*) AS n FROM scored_event"))[0]["n"] == 6


async def test_deadlock_and_disk_full_are_retried_until_the_write_succeeds(proc):
    # a sequence survives the rollback of each failed attempt (a counter table would not)
    await sql(proc.dsn, """CREATE SEQUENCE attempts;
        CREATE FUNCTION flaky() RETURNS trigger AS $$ DECLARE n bigint; BEGIN
        n := nextval('attempts');
        IF n <= 2 THEN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END IF;
        IF n <= 4 THEN RAISE EXCEPTION 'disk full' USING ERRCODE = '53100'; END IF;
        RETURN NEW; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER flaky BEFORE INSERT ON scored_event FOR EACH STATEMENT EXECUTE FUNCTION flaky()""")
    (await proc.process(items(8)))
    assert proc.publisher.deadletters == []
    assert (await sql(proc.dsn, "SELECT count(*) AS n FROM scored_event"))[0]["n"] == 8
    assert proc.sink.up
    assert (await sql(proc.dsn, "SELECT last_value AS n FROM attempts"))[0]["n"] >= 5  # it really failed 4 times


async def test_future_dated_message_goes_to_the_dead_letter_topic(proc):
    (await proc.process(items(3) + items(1, 3, published_at="2099-01-01T00:00:00Z")))
    assert [d.item.offset for d in proc.publisher.deadletters] == [3]
    assert "in the future" in proc.publisher.deadletters[0].reason


async def test_personal_data_is_masked_before_storage_and_in_dead_letters(proc):
    from core.masking import Masker

    proc.masker = Masker(("email", "phone"))
    ok = items(1, 0, text="Acme IR: call 212-555-0100 or mail ir@acme.com about the recall",
               title="Write to jane@acme.com")
    bad = Incoming(b'{"id": "x", "source": "wire-a", "text": "mail bob@example.org", "oops": 1}', None,
                   "finsent.news", 0, 1)
    await proc.process(ok + [bad])
    (stored,) = await sql(proc.dsn, "SELECT text, title FROM scored_event")
    assert stored["text"] == "Acme IR: call [PHONE] or mail [EMAIL] about the recall #0"
    assert stored["title"] == "Write to [EMAIL]"
    (dead,) = proc.publisher.deadletters
    assert b"bob@example.org" not in dead.item.value and b"[EMAIL]" in dead.item.value
    assert "unknown field" in dead.reason
