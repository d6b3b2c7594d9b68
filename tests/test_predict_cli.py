"""`finsent predict` end to end through the CLI, good and bad input."""

import json

import pytest
from typer.testing import CliRunner

from finsent.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def read_jsonl(p):
    return [json.loads(line) for line in p.read_text().splitlines()]


def test_csv_round_trip_in_order(tmp_path, artifact):
    src = tmp_path / "in.csv"
    src.write_text('headline,id\n"Oil jumps 5% as OPEC cuts output",1\n,2\n"$TSLA down 9% on delivery miss",3\n')
    out = tmp_path / "out.jsonl"
    res = run("--input", src, "--text-column", "headline", "--output", out, "--model", artifact)
    assert res.exit_code == 0, res.output
    rows = read_jsonl(out)
    assert len(rows) == 3
    assert rows[1] == {"row": 2, "error": "empty text"}
    for r in (rows[0], rows[2]):
        assert set(r) >= {"topic", "topic_probs", "sentiment", "sentiment_probs", "score", "model_version"}
        assert set(r["sentiment_probs"]) == {"negative", "neutral", "positive"} and len(r["topic_probs"]) == 20
    assert rows[2]["sentiment"] == "negative" and rows[0]["topic"] == "energy_oil"


def test_jsonl_bad_lines_become_error_rows(tmp_path, artifact):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "Gold hits a record high"}\nnot json\n{"body": "x"}\n{"text": "\xff\xfe bad"}\n'
                    + json.dumps({"text": "stocks fall " * 8_000}).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    res = run("--input", src, "--output", out, "--model", artifact)
    assert res.exit_code == 0, res.output
    rows = read_jsonl(out)
    assert "topic" in rows[0]
    assert rows[1]["row"] == 2 and rows[1]["error"].startswith("not JSON")
    assert rows[2] == {"row": 3, "error": "no field 'text'"}
    assert rows[3]["row"] == 4 and "UTF-8" in rows[3]["error"]
    assert rows[4]["truncated"] is True


@pytest.mark.parametrize("content,match", [
    (b"body\nx\n", "no column 'text'"),
    (b"text\n\xff\xfe\n", "not valid UTF-8"),
])
def test_unreadable_csv_is_a_clear_error(tmp_path, artifact, content, match):
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    res = run("--input", src, "--output", out, "--model", artifact)
    assert res.exit_code == 2 and match in res.output and not out.exists()


def test_missing_file_and_directory(tmp_path, artifact):
    for src in (tmp_path / "nope.csv", tmp_path):
        res = run("--input", src, "--output", tmp_path / "o.jsonl", "--model", artifact, "--format", "csv")
        assert res.exit_code == 2 and "error" in res.output


def test_entities_in_predict_and_explain(tmp_path, artifact, monkeypatch):
    """Who each row is about: a company named without a cashtag, two companies in one headline
    (both stored, the shared item sentiment marked), a cashtag outside the directory, none."""
    monkeypatch.setenv("FINSENT_SYMBOLS_FILE", str(tmp_path / "none.json"))  # no user directory: the shipped one
    src = tmp_path / "in.jsonl"
    texts = ["Boeing grounds its 737 MAX fleet after a second crash in five months", "Apple beats, Samsung slides",
             "$ZZQX to the moon", "Rates stay on hold"]
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    res = run("--input", src, "--output", out, "--model", artifact)
    assert res.exit_code == 0, res.output
    rows = read_jsonl(out)
    [ba] = rows[0]["entities"]
    assert (ba["ticker"], ba["name"], ba["relevance"], ba["spans"], ba["sentiment_from"]) == (
        "BA", "Boeing", 0.75, [[0, 6]], "item")
    assert (ba["sentiment"], ba["score"]) == (rows[0]["sentiment"], rows[0]["score"])
    assert [(e["ticker"], e["sentiment_from"]) for e in rows[1]["entities"]] == [("AAPL", "entity_head"),
                                                                                ("SSNLF", "entity_head")]
    apple, samsung = rows[1]["entities"]
    assert samsung["score"] < apple["score"]  # each entity read on its own: Samsung slides
    assert [(e["ticker"], e["name"], e["sources"]) for e in rows[2]["entities"]] == [("ZZQX", None, ["cashtag"])]
    assert rows[3]["entities"] == []
    assert set(ba) == {"ticker", "name", "relevance", "sentiment", "score", "spans", "sources", "sentiment_from"}
    off = tmp_path / "off.jsonl"
    assert run("--input", src, "--output", off, "--model", artifact, "--no-entities").exit_code == 0
    assert all("entities" not in r for r in read_jsonl(off))
    r = runner.invoke(app, ["explain", texts[1], "--json", "--model", str(artifact)])
    assert r.exit_code == 0, r.output
    assert [e["ticker"] for e in json.loads(r.stdout)["entities"]] == ["AAPL", "SSNLF"]
    r = runner.invoke(app, ["explain", texts[0], "--model", str(artifact)])
    assert r.exit_code == 0 and "Boeing" in r.stdout and "'Boeing'" in r.stdout
    r = runner.invoke(app, ["symbols", "search", "boeing"])
    assert r.exit_code == 0 and "BA" in r.stdout
