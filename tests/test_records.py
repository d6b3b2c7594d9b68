"""Input validation and the scoring step as plain objects (no Kafka, no Postgres)."""

import json

import orjson
import pytest

from stream.records import Invalid, decode

NOW = 1767607200.0  # 2026-01-05T10:00:00Z: receive time
OK = {"id": "a1", "source": "wire-a", "text": "Acme shares fall", "published_at": "2026-01-05T10:00:00Z"}


def raw(**kw):
    return orjson.dumps({**OK, **kw})


def test_valid_event_and_cashtags_fill_tickers():
    e = decode(raw(text="$acme and $BRK.B slide; not a $5 bill"), 20_000)
    assert e.all_tickers() == ["ACME", "BRK.B"]
    assert e.published_at.tzinfo is not None
    assert decode(raw(tickers=["$msft", "MSFT"]), 20_000).all_tickers() == ["MSFT"]


def test_published_at_within_the_skew_is_accepted():
    assert decode(raw(published_at="2026-01-05T10:04:00Z"), 20_000, now=NOW, max_skew_s=300).id == "a1"


def test_a_byte_order_mark_before_the_json_is_ignored():
    """Windows tools write a UTF-8 BOM; it was dead-lettered as "invalid UTF-8" (it is valid UTF-8)."""
    assert decode(b"\xef\xbb\xbf" + raw(), 20_000).id == "a1"
    with pytest.raises(Invalid):
        decode(b"\xef\xbb\xbf\xef\xbb\xbf" + raw(), 20_000)  # one mark, not two


@pytest.mark.parametrize("published_at, utc", [
    ("Mon, 05 Jan 2026 10:00:00 GMT", "2026-01-05T10:00:00+00:00"),   # RSS pubDate
    ("Mon, 05 Jan 2026 15:30:00 +0530", "2026-01-05T10:00:00+00:00"),
    ("05 Jan 2026 05:00 EST", "2026-01-05T10:00:00+00:00"),           # a zone the standard names
    ("Mon, 05 Jan 2026 10:00:00 -0000", "2026-01-05T10:00:00+00:00"),
    (1767607200, "2026-01-05T10:00:00+00:00"),                         # epoch seconds
    (1767607200000, "2026-01-05T10:00:00+00:00"),                      # and milliseconds
])
def test_published_at_in_the_forms_feeds_write(published_at, utc):
    from datetime import timezone

    e = decode(raw(published_at=published_at), 20_000, now=NOW, max_skew_s=300)
    assert e.published_at.astimezone(timezone.utc).isoformat() == utc


@pytest.mark.parametrize("published_at, reason", [
    ("Mon, 05 Jan 2026 10:00:00 CET", "time zone 'CET'"),  # read as UTC it would be an hour off
    ("Mon, 05 Jan 0001 10:00:00 +0100", "year 0001"),       # not 2001 by the two-digit-year rule
    ("Mon, 32 Jan 2026 10:00:00 GMT", "day is out of range"),
])
def test_published_at_rfc2822_that_cannot_be_read_right_is_invalid(published_at, reason):
    with pytest.raises(Invalid, match=f"published_at.*{reason}"):
        decode(raw(published_at=published_at), 20_000)


def test_a_numeric_id_is_its_decimal_text_and_other_types_are_refused():
    assert decode(raw(id=1732984561234567890), 20_000).id == "1732984561234567890"
    assert decode(raw(id=0), 20_000).id == "0"
    for bad in (1.5, True, ["a"], None):
        with pytest.raises(Invalid, match="^id: "):
            decode(raw(id=bad), 20_000)


@pytest.mark.parametrize("text", [None, "", "  \n "])
def test_a_headline_only_item_is_read_from_its_title(text):
    fields = {k: v for k, v in OK.items() if k != "text"} | ({} if text is None else {"text": text})
    e = decode(orjson.dumps({**fields, "title": "Boeing grounds its 737 MAX fleet"}), 20_000)
    assert e.text == e.title == "Boeing grounds its 737 MAX fleet"
    with pytest.raises(Invalid, match="text"):  # a blank title does not stand in
        decode(orjson.dumps({**fields, "title": "  "}), 20_000)


def test_html_markup_is_read_as_its_words_and_plain_text_is_untouched():
    e = decode(raw(text='<p>Boeing &amp; Airbus <b>slide</b> after a crash</p><p>Shares fell 5%.</p>'
                        '<script>track()</script>', title="<h1>Planes &#8211; news</h1>"), 20_000)
    assert e.text == "Boeing & Airbus slide after a crash Shares fell 5%."
    assert e.title == "Planes \u2013 news"
    for plain in ("AT&amp;T beats; EPS < est and revenue > est", "$AAPL <3", "x<y>z"):
        assert decode(raw(text=plain), 20_000).text == plain  # a tweet's '&amp;' stays as trained on
    with pytest.raises(Invalid, match="text: empty"):
        decode(raw(text='<img src="chart.png"><br/>'), 20_000)


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
    (raw(published_at="2026-01-05T10:06:00Z"), "360 s in the future"),
])
def test_every_kind_of_bad_input_has_a_reason(value, reason):
    with pytest.raises(Invalid) as err:
        decode(value, 20, now=NOW, max_skew_s=300)
    assert reason in str(err.value)




@pytest.mark.parametrize("published_at", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z",
                                          "2200-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"])
def test_published_at_outside_what_is_stored_is_invalid(published_at):
    with pytest.raises(Invalid, match="published_at.*out of range"):
        decode(raw(published_at=published_at), 20_000)  # no receive time: the range alone


@pytest.mark.parametrize("field,value", [("title", "a\u0000b"), ("url", "http://x/\u0000"), ("lang", "e\u0000n"),
                                         ("tickers", ["AC\u0000ME"]), ("id", "a\u0000")])
def test_nul_in_any_text_field_is_invalid(field, value):
    with pytest.raises(Invalid, match=f"NUL character in {field}"):
        decode(raw(**{field: value}), 20_000)


def test_scored_and_alert_records_round_trip_and_refuse_what_is_not_theirs():
    from stream.records import AlertRecord, Counts, Marks, decode_scored

    c = Counts("ticker:ACME", [[17, 3, 2, ["wire/1", "wire/2"], {"ACME": 2}]], batch=41)
    assert decode_scored(c.encode()) == c
    cell, = c.detector_cells()
    assert (cell.slice, cell.n, cell.k, cell.samples, cell.by_ticker) == (17, 3, 2, ("wire/1", "wire/2"), {"ACME": 2})
    m = Marks({"finsent.news/0": [1_700_000_000.0, False]})
    assert decode_scored(m.encode()) == m and Marks.KEY == b"~marks"
    for bad in (b"not json", b'{"kind": "other"}', b'{"kind": "counts", "cells": []}', b"[1]"):
        with pytest.raises(Invalid):
            decode_scored(bad)
    a = AlertRecord(event="opened", state="open", revision=0, key_type="ticker", key="ACME",
                    alert_start="2026-01-05T14:30:00+00:00", window_start="2026-01-05T14:28:00+00:00",
                    window_end="2026-01-05T14:30:00+00:00", n=30, negatives=24, expected_negatives=3.1,
                    baseline_rate=0.1, baseline_n=40.0, z=9.2, p_value=1e-12, severity="high",
                    sample_event_ids=["wire/1"], alert_id=7, opened_at="2026-01-05T14:30:02+00:00")
    assert AlertRecord.decode(a.encode()) == a
    assert orjson.loads(a.encode())["event"] == "opened" and orjson.loads(a.encode())["resolved_at"] is None
    with pytest.raises(Invalid):
        AlertRecord.decode(b'{"event": "opened"}')


def test_decode_only_ever_raises_invalid():
    """Whatever a feed sends, decode returns an event or raises Invalid (a dead letter with its
    reason); any other exception would escape the worker's batch. Values are drawn around the
    forms decode reads: RFC 2822 dates, HTML fragments, numbers where strings go."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    rfc = st.builds("{}{} {} {:04d} {}:{:02d}:{:02d} {}".format, st.sampled_from(["", "Mon, ", "Xyz,"]),
                    st.integers(0, 99), st.sampled_from(["Jan", "Dec", "Foo"]), st.integers(0, 9999),
                    st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
                    st.sampled_from(["GMT", "UT", "EST", "CET", "+9999", "-2400", "-0000", "Z", "+0530"]))
    html = st.text(alphabet="<>/![]-=\"' &;#apbrdivscriptCDATA0123456789\n", max_size=60).map(lambda t: "<p>" + t)
    anything = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=30),
                         st.lists(st.text(max_size=5), max_size=3))
    field = {"id": st.one_of(anything, st.integers(0, 2**63)), "source": anything,
             "text": st.one_of(anything, html), "title": st.one_of(anything, html),
             "published_at": st.one_of(anything, rfc, st.integers(-10**15, 10**15)), "tickers": anything,
             "lang": anything}
    message = st.fixed_dictionaries({}, optional=field)

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(message)
    def check(obj):
        try:
            decode(json.dumps(obj).encode(), 20_000, now=NOW, max_skew_s=300)  # (big integers, NaN too)
        except Invalid:
            pass

    check()
