"""Input validation and the scoring step as plain objects (no Kafka, no Postgres)."""

import orjson
import pytest

from stream.pipeline import BatchScorer, Incoming, RecentIds
from stream.records import Invalid, decode

OK = {"id": "a1", "source": "wire-a", "text": "Acme shares fall", "published_at": "2026-01-05T10:00:00Z"}


def raw(**kw):
    return orjson.dumps({**OK, **kw})


def test_valid_event_and_cashtags_fill_tickers():
    e = decode(raw(text="$acme and $BRK.B slide; not a $5 bill"), 20_000)
    assert e.all_tickers() == ["ACME", "BRK.B"]
    assert e.published_at.tzinfo is not None
    assert decode(raw(tickers=["$msft", "MSFT"]), 20_000).all_tickers() == ["MSFT"]


def test_naive_timestamp_is_utc():
    e = decode(raw(published_at="2026-01-05T10:00:00"), 20_000)
    assert e.published_at.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("value,reason", [
    (None, "tombstone"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (orjson.dumps({k: v for k, v in OK.items() if k != "text"}), "text: Field required"),
    (raw(text=["a"]), "text: Input should be a valid string"),
    (raw(text=""), "text: String should have at least 1 character"),
    (raw(text=" \n "), "text: empty"),
    (raw(text="x" * 21), "21 characters, more than 20"),
    (raw(extra=1), "extra: unknown field"),
    (raw(published_at="soon"), "published_at"),
    (raw(tickers=["A" * 17]), "tickers"),
    (raw(text="nul \u0000 inside"), "NUL"),
])
def test_every_kind_of_bad_input_has_a_reason(value, reason):
    with pytest.raises(Invalid) as err:
        decode(value, 20)
    assert reason in str(err.value)


def test_recent_ids_forgets_oldest():
    r = RecentIds(2)
    assert not r.check_and_add(("s", "1")) and not r.check_and_add(("s", "2"))
    assert r.check_and_add(("s", "1"))
    assert not r.check_and_add(("s", "3"))  # evicts ("s","2"), the least recently seen
    assert not r.check_and_add(("s", "2"))


@pytest.mark.slow
def test_batch_scorer_rows_records_and_dead_letters():
    from models.runtime import Scorer

    b = BatchScorer(Scorer.from_artifact(), max_chars=1000)
    items = [Incoming(raw(id=str(i), text=t), b"k", "finsent.news", 0, i)
             for i, t in enumerate(["$ACME plunges after fraud charges", "Fed holds rates steady"])]
    items.append(Incoming(b"junk", None, "finsent.news", 1, 7))
    items.append(Incoming(raw(id="0", text="again"), None, "finsent.social", 2, 9))
    good, dead = b.prepare(items)
    assert [e.id for e in good] == ["0", "1"]
    assert [d.reason.split(":")[0] for d in dead] == ["not JSON", "duplicate id"]
    assert dead[0].headers()["source_offset"] == b"7" and dead[0].item.value == b"junk"
    out = b.score(good)
    assert len(out.rows) == 2 and out.rows[0][1] == "0" and out.rows[0][7] == ["ACME"]
    keys = [k for k, _ in out.records]
    assert "ticker:ACME" in keys and sum(k.startswith("topic:") for k in keys) == 2
    assert out.rows[0][12] == "negative"
