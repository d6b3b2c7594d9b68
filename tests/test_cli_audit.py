"""The command line with careless or hostile input: `finsent predict`, `explain`, `replay`,
`simulate` and `symbols load | list | search`. Each case is one a user hit before it was fixed: a
traceback instead of a message, rows lost or reordered without a word, a file read whole into
memory, a real SEC file refused, a damaged directory file that crashed every command.

Run: .venv/bin/python -m pytest -q tests/test_cli_audit.py
"""
from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from finsent.cli import app
from models.data import DataError
from models.entities import Directory

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_symbols(tmp_path, monkeypatch):
    """Every test with its own (absent) user directory: nothing of the user's is read or written.
    The settings are read again (they are cached, and hold FINSENT_SYMBOLS_FILE)."""
    monkeypatch.setenv("FINSENT_SYMBOLS_FILE", str(tmp_path / "symbols" / "user.json"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def predict(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


# ---------------- predict through a stub scorer (no model: the file handling alone) ----------------
class _Pred:
    def __init__(self, text):
        self.text = text

    def to_dict(self):
        return {"sentiment": "neutral", "echo": self.text[:20], "truncated": False}


class StubScorer:
    """Echoes the start of each text; remembers the longest text it was given."""

    def __init__(self):
        self.longest = 0

    def predict(self, texts):
        self.longest = max([self.longest, *map(len, texts)])
        return [_Pred(t) for t in texts]


def stub_predict(src: Path, dst: Path, **kw) -> dict:
    from models.predict_file import predict_file

    return predict_file(StubScorer(), src, dst, linker=False, min_relevance=0.5, **kw)


def test_predict_streams_the_file_instead_of_reading_it_whole(tmp_path):
    """The old reader held the whole file and every row in memory (1 M rows: 435 MB of JSONL, 738 MB
    of CSV); now a chunk at a time."""
    line = json.dumps({"id": 0, "text": "Acme shares fall after weak guidance, analysts cut targets"}) + "\n"
    src = tmp_path / "in.jsonl"
    src.write_text(line * 40_000)
    size = src.stat().st_size
    import models.predict_file  # noqa: F401  (imports are not the reader's memory)
    stub_predict(src, tmp_path / "warm.jsonl")
    tracemalloc.start()
    try:
        counts = stub_predict(src, tmp_path / "out.jsonl", chunk=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts["rows"] == counts["scored"] == 40_000
    assert peak < size / 4, f"peak {peak:,} bytes for a {size:,}-byte file"


def test_a_huge_text_is_cut_before_the_tokenizer_sees_it(tmp_path):
    """A 50 MB JSONL line went whole to the tokenizer: 79 s and 6.6 GB for one row. Now the scorer
    gets a bounded prefix (the model reads 128 tokens) and the row says `truncated`."""
    from models.predict_file import predict_file

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "Shares of Acme fall after weak guidance " * 100_000}) + "\n"
                   + json.dumps({"text": "Gold up"}) + "\n")
    scorer = StubScorer()
    predict_file(scorer, src, tmp_path / "out.jsonl", linker=False, min_relevance=0.5)
    assert scorer.longest <= 200_000
    big, small = read_jsonl(tmp_path / "out.jsonl")
    assert big["truncated"] is True and small["truncated"] is False
    assert big["echo"] == "Shares of Acme fall "


def test_jsonl_edge_lines_keep_their_place_and_say_what_is_wrong(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(codecs.BOM_UTF8 + b'{"text": "Gold up"}\r\n'   # a BOM: the first row was lost
                    b"\r\n"                                           # blank: a row of its own
                    b"[1, 2]\n"
                    b'{"text": null}\n'
                    b'{"text": 5}\n'
                    b'{"text": "ok", "x":\n'
                    b'{"text": "last"}')                            # no final newline
    counts = stub_predict(src, tmp_path / "out.jsonl")
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert counts["rows"] == len(rows) == 7
    assert rows[0]["echo"] == "Gold up" and rows[6]["echo"] == "last"
    assert rows[1] == {"row": 2, "error": "blank line"}
    assert rows[2] == {"row": 3, "error": "not a JSON object (an array)"}
    assert rows[3] == {"row": 4, "error": "field 'text' is null, not a string"}
    assert rows[4] == {"row": 5, "error": "field 'text' is a number, not a string"}
    assert rows[5]["row"] == 6 and rows[5]["error"].startswith("not JSON") and "line 1" not in rows[5]["error"]


def test_a_utf16_file_and_a_semicolon_or_tab_csv_are_read(tmp_path):
    """Excel's 'Unicode text' (UTF-16) and European ';' CSVs were refused; a .tsv was split on commas."""
    cases = {"u16.csv": "text,id\nOil jumps,1\n€ rises,2\n".encode("utf-16"),
             "u16.jsonl": '{"text": "Oil jumps"}\n{"text": "€ rises"}\n'.encode("utf-16"),
             "semi.csv": b'id;text\n1;Oil jumps\n2;"\xe2\x82\xac rises; a lot"\n',
             "tabs.tsv": b"id\ttext\n1\tOil jumps, again\n2\t\xe2\x82\xac rises\n"}
    for name, content in cases.items():
        src = tmp_path / name
        src.write_bytes(content)
        stub_predict(src, tmp_path / "out.jsonl")
        assert [r["echo"] for r in read_jsonl(tmp_path / "out.jsonl")][0].startswith("Oil jumps"), name
        assert read_jsonl(tmp_path / "out.jsonl")[1]["echo"].startswith("€ rises"), name


def test_csv_broken_rows_are_error_rows_and_a_long_cell_is_scored(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,"two\nlines"\n2\n3,"bad"quote\n4,' + "x" * 200_000 + "\n5,after\n")
    counts = stub_predict(src, tmp_path / "out.jsonl")
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert counts["rows"] == len(rows) == 5
    assert rows[0]["echo"] == "two\nlines"
    assert rows[1]["row"] == 2 and "line 4" in rows[1]["error"] and "column 'text'" in rows[1]["error"]
    assert rows[2]["row"] == 3 and "line 5" in rows[2]["error"]         # was scored as 'badquote'
    assert rows[3]["echo"] == "x" * 20                                   # csv's 131,072 limit: a traceback
    assert rows[4]["echo"] == "after"


@pytest.mark.parametrize("content,match", [
    (b'id,text\n1,"never closed\n2,after\n3,more\n', "in.csv:2: a quoted field opens on this line"),
    (b"", "empty file"),
    (b"text\nfine\ncaf\xe9\n", "in.csv:3: not valid UTF-8"),
])
def test_unreadable_csv_is_refused_naming_the_line(tmp_path, content, match):
    """An unclosed quote swallowed every later row into one text, silently."""
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    out.write_text("an older output\n")
    with pytest.raises(DataError, match=match):
        stub_predict(src, out)
    assert out.read_text() == "an older output\n"  # kept, not half-overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.jsonl"]  # no temporary left


@pytest.mark.parametrize("content,match", [
    (b'{"body": "a"}\n{"body": "b"}\n', "no line has a field 'text'"),
    (b'[\n  {"text": "a"},\n  {"text": "b"}\n]\n', "in.json:1: a JSON document spread over lines"),
    (b'[1, 2]\n"text"\nnot json\n', "no line is a JSON object"),
])
def test_a_jsonl_file_without_any_usable_line_is_refused(tmp_path, content, match):
    """A wrong --text-column or a JSON array file gave a file of error rows and exit 0."""
    src = tmp_path / "in.json"
    src.write_bytes(content)
    with pytest.raises(DataError, match=match):
        stub_predict(src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


# ---------------- predict through the CLI ----------------
@pytest.mark.slow
def test_predict_output_path_mistakes_are_clear_errors(tmp_path, artifact):
    src = tmp_path / "in.csv"
    src.write_text("text\nOil jumps\n")
    res = predict("-i", src, "-o", tmp_path, "--model", artifact)          # a directory: was a traceback
    assert res.exit_code == 2 and "is a directory" in res.output and "Traceback" not in res.output
    res = predict("-i", src, "-o", tmp_path / "no" / "out.jsonl", "--model", artifact)
    assert res.exit_code == 2 and "no such folder" in res.output
    res = predict("-i", src, "-o", src, "--model", artifact)              # the input: was overwritten
    assert res.exit_code == 2 and "is the input file" in res.output
    assert src.read_text() == "text\nOil jumps\n"
    res = predict("-i", src, "-o", tmp_path / "o.jsonl", "--format", "xml", "--model", artifact)
    assert res.exit_code == 2 and "unknown format 'xml'" in res.output   # was read as JSONL
    res = predict("-i", src, "-o", tmp_path / "o.jsonl", "--format", "CSV", "--model", artifact)
    assert res.exit_code == 0 and "topic" in read_jsonl(tmp_path / "o.jsonl")[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "o.jsonl"]  # no temporary left


@pytest.mark.slow
def test_predict_names_the_lines_of_bad_rows(tmp_path, artifact):
    """CSV rows are records, not lines: the summary says which line each bad row is on."""
    src = tmp_path / "in.csv"
    src.write_bytes(codecs.BOM_UTF8 + 'id,text\r\n1,"Oil jumps\r\nas OPEC cuts"\r\n2,\r\n3,$TSLA down 9%\r\n'.encode())
    out = tmp_path / "out.jsonl"
    res = predict("-i", src, "-o", out, "--model", artifact)
    assert res.exit_code == 0, res.output
    rows = read_jsonl(out)
    assert rows[1] == {"row": 2, "error": "empty text"} and rows[2]["sentiment"] == "negative"
    assert "in.csv: line 4 (row 2): empty text" in res.output


# ---------------- explain ----------------
@pytest.mark.slow
def test_explain_with_a_damaged_symbol_file_names_the_file(tmp_path, artifact, monkeypatch):
    bad = tmp_path / "symbols.json"
    bad.write_text('{"format": "finsent-symbols/1", "symbols": [')
    monkeypatch.setenv("FINSENT_SYMBOLS_FILE", str(bad))
    get_settings.cache_clear()
    res = runner.invoke(app, ["explain", "Apple shares rise", "--model", str(artifact)])
    assert res.exit_code == 2 and str(bad) in res.output and "Traceback" not in res.output


# ---------------- replay / simulate ----------------
def finsent(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finsent.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "200", **env})


def test_replay_without_a_broker_is_one_clear_line(tmp_path):
    """Was a 60-line aiokafka traceback (and 'Unclosed AIOKafkaProducer')."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "Oil jumps"}\n')
    r = finsent("replay", src, FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert r.returncode == 1 and "error: Kafka at 127.0.0.1:1" in r.stderr
    assert "Traceback" not in r.stderr and "Unclosed" not in r.stderr


def test_replay_checks_the_file_before_connecting(tmp_path):
    """A CSV row with an extra field crashed mid-stream (orjson: 'Dict key must be str'), after the
    rows before it were sent; a missing file printed its name twice."""
    src = tmp_path / "in.csv"
    src.write_text("id,text\na,Oil jumps\nb,Gold up,extra\n")
    r = finsent("replay", src, FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert r.returncode == 2 and "in.csv:3: 3 fields, the header has 2" in r.stderr
    r = finsent("replay", tmp_path / "nope.jsonl")
    assert r.returncode == 2 and r.stderr.count("nope.jsonl") == 1
    r = finsent("simulate", "--n", "0", FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_replay_jsonl_drops_the_bom_and_refuses_an_oversize_line(tmp_path):
    from stream.feed import file_events

    src = tmp_path / "in.jsonl"
    src.write_bytes(codecs.BOM_UTF8 + b'{"id": "a"}\n\n{"id": "b"}\n')
    assert file_events(src) == [b'{"id": "a"}', b'{"id": "b"}']  # the BOM was sent: a dead letter
    src.write_text(json.dumps({"id": "c", "text": "x" * 2_000_000}) + "\n")
    with pytest.raises(DataError, match=r"in.jsonl:1: .* a Kafka message holds at most"):
        file_events(src)


# ---------------- symbols ----------------
def symbols(*args):
    return runner.invoke(app, ["symbols", *map(str, args)])


def loaded(tmp_path) -> Path:
    """A directory already in use, to show that a refused file leaves it alone."""
    user = tmp_path / "symbols" / "user.json"
    src = tmp_path / "first.csv"
    src.write_text("ticker,name\nZQXR,Zephyr Quixotic Robotics Inc.\n")
    assert symbols("load", src).exit_code == 0
    return user


@pytest.mark.parametrize("doc,match", [
    ({"0": {"cik_str": 1, "ticker": 5, "title": ["Acme"]}}, "entry '0': ticker and title must be strings"),
    ({"0": {"cik_str": 1, "ticker": None, "title": "Acme"}}, "entry '0': ticker and title must be strings"),
    ({"fields": ["cik", "name", "ticker"], "data": [[1, "Acme"]]}, r"data\[0\]: expected a list of 3 values"),
    ({"fields": ["cik", "name", "ticker"], "data": [5]}, r"data\[0\]: expected a list of 3 values"),
    ({"fields": ["cik", "name", "ticker"], "data": {"a": 1}}, "'data' must be a list"),
    ({"fields": "cik,name,ticker", "data": []}, "'fields' must be a list"),
    ([{"ticker": "AAA", "title": "A"}], "got a JSON array"),
    ({"format": "finsent-symbols/1"}, "'symbols' must be a list"),
    ({"format": "finsent-symbols/1", "symbols": [{"ticker": "AAA", "name": "A", "bogus": 1}]},
     r"symbols\[0\]: .*'bogus'"),
])
def test_malformed_sec_and_symbol_files_are_refused_naming_the_place(tmp_path, doc, match):
    """Numbers and nulls became tickers ('5', 'NONE'); short rows, non-lists and unknown fields were
    tracebacks."""
    import re

    user = loaded(tmp_path)
    before = user.read_text()
    bad = tmp_path / "company_tickers.json"
    bad.write_text(json.dumps(doc))
    res = symbols("load", bad)
    assert res.exit_code == 2 and re.search(match, res.output), res.output
    assert "Traceback" not in res.output and user.read_text() == before


def test_sec_preferred_shares_are_left_out_not_the_whole_file(tmp_path):
    """The real company_tickers.json lists preferreds ('BAC-PB'): the whole file was refused."""
    src = tmp_path / "company_tickers.json"
    src.write_text(json.dumps({"0": {"cik_str": 70858, "ticker": "BAC", "title": "BANK OF AMERICA CORP /DE/"},
                               "1": {"cik_str": 70858, "ticker": "BAC-PB", "title": "BANK OF AMERICA CORP /DE/"},
                               "2": {"cik_str": 99999, "ticker": "ZZZQ", "title": "ZEPHYR QUANTUM HOLDINGS INC"}}))
    res = symbols("load", "--no-curated", src)
    assert res.exit_code == 0, res.output
    assert "skipped 1 row(s)" in res.output and "entry '1': 'BAC-PB'" in res.output
    d = Directory.configured()
    assert d.get("BAC") is not None and d.get("ZZZQ") is not None and len(d) == 2


def test_symbols_csv_in_other_dialects_loads(tmp_path):
    for name, content in {"semi.csv": b"ticker;name\nZQXR;Zephyr Quixotic Robotics\n",
                          "tabs.csv": b"ticker\tname\nZQXR\tZephyr Quixotic Robotics\n",
                          "u16.csv": "ticker,name\nZQXR,Zephyr Quixotic Robotics\n".encode("utf-16")}.items():
        src = tmp_path / name
        src.write_bytes(content)
        res = symbols("load", "--no-curated", src)
        assert res.exit_code == 0, (name, res.output)
        assert Directory.configured().get("ZQXR").name == "Zephyr Quixotic Robotics", name


@pytest.mark.parametrize("content,match", [
    ("ticker,name\nZQXR,Zephyr Robotics\nzqxr,Other Co\n", "x.csv:3: ticker 'zqxr' again, as 'Other Co'"),
    ("ticker,name\n\n\nZQXR,\n", "x.csv:4: empty ticker or name"),            # was 'x.csv:2'
    ('ticker,name\nZQXR,"Zephyr\nBBB,Other\n', "x.csv:2: a quoted field opens on this line"),
    ("ticker,name\nZQXR,Zephyr\nBBB,Caf\xe9 Co\n", "x.csv:3: not UTF-8"),
])
def test_symbols_csv_mistakes_name_the_right_line(tmp_path, content, match):
    """A second row for a ticker was dropped without a word; an unclosed quote made one company of
    the rest of the file; line numbers drifted after blank lines."""
    user = loaded(tmp_path)
    before = user.read_text()
    src = tmp_path / "x.csv"
    src.write_bytes(content.encode("latin-1") if "\xe9" in content else content.encode())
    res = symbols("load", src)
    assert res.exit_code == 2 and match in res.output, res.output
    assert user.read_text() == before


def test_a_name_with_a_line_break_is_one_line(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text('ticker,name\nZQXR,"Zephyr\nRobotics"\n')
    assert symbols("load", "--no-curated", src).exit_code == 0
    res = symbols("list")
    assert "ZQXR" in res.output and "Zephyr Robotics" in res.output


def test_list_and_search_with_a_damaged_directory_file(tmp_path, monkeypatch):
    for content in ('{"format": "finsent-symbols/1", "symbols": [', "[1]", '{"format": "finsent-symbols/1", '
                    '"symbols": [{"ticker": "A", "name": "A", "bogus": 1}]}'):
        bad = tmp_path / "damaged.json"
        bad.write_text(content)
        monkeypatch.setenv("FINSENT_SYMBOLS_FILE", str(bad))
        for args in (["list"], ["search", "apple"]):
            res = symbols(*args)
            assert res.exit_code == 2 and str(bad) in res.output, (content, res.output)


def test_search_and_list_limits_and_queries_without_letters(tmp_path):
    res = symbols("search", "$")  # every ticker starts with '' : 20 arbitrary rows
    assert res.exit_code == 2 and "no letter or digit" in res.output
    res = symbols("search", "--limit", "0", "boeing")  # 0 was 'no symbol matches'
    assert res.exit_code == 0 and res.output.startswith("BA ")
    assert symbols("search", "--limit", "-1", "boeing").exit_code == 2
    assert symbols("list", "--limit", "-5").exit_code == 2  # printed '... more' and nothing else
    res = symbols("search", "(?:[a-z]+.*" * 2000)  # not a pattern, and not slow
    assert res.exit_code == 1 and "no symbol matches" in res.output


def test_load_to_a_directory_leaves_no_temporary_file(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("ticker,name\nZQXR,Zephyr Quixotic Robotics\n")
    target = tmp_path / "taken"
    target.mkdir()
    res = symbols("load", src, "--path", target)
    assert res.exit_code == 2 and "is a directory" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "x.csv"]  # was a traceback and taken.tmp


def test_merge_of_a_saved_symbols_file_merges(tmp_path):
    """`load --merge` of a file `load` wrote replaced the directory: --merge was ignored."""
    src = tmp_path / "mine.csv"
    src.write_text("ticker,name\nZQXR,Zephyr Quixotic Robotics\n")
    saved = tmp_path / "saved.json"
    assert symbols("load", "--no-curated", src, "--path", saved).exit_code == 0
    res = symbols("load", "--merge", saved)
    assert res.exit_code == 0, res.output
    d = Directory.configured()
    assert d.get("ZQXR") is not None and d.get("AAPL") is not None
