from pathlib import Path

import pytest

from models.data import DataError, SourceSpec, load_source, read_rows, stratified_split
from models.labels import SENTIMENT, TOPIC, TOPICS, slug


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def test_topic_ids_are_stable_slugs_in_release_order():
    assert TOPICS[0] == "analyst_update" and TOPICS[11] == "ipo" and TOPICS[19] == "stock_movement"
    assert slug("M&A | Investments") == "m_and_a_investments"
    assert len(TOPIC) == 20 and len(set(TOPICS)) == 20


def test_twitter_sentiment_remap(tmp_path):
    p = write(tmp_path, "s.csv", 'text,label\r\n"bears, everywhere",0\r\nbulls,1\r\nmeh,2\r\n')
    ex = load_source(SourceSpec.parse(f"sentiment:csv:{p}:twitter-sentiment"))
    assert [SENTIMENT.labels[e.sentiment] for e in ex] == ["negative", "positive", "neutral"]
    assert all(e.topic == -100 for e in ex)  # the other head is masked


def test_unmapped_numeric_label_is_an_error(tmp_path):
    p = write(tmp_path, "s.csv", "text,label\nx,0\n")
    with pytest.raises(DataError, match="unknown sentiment label '0'"):
        load_source(SourceSpec.parse(f"sentiment:csv:{p}"))


def test_phrasebank_splits_on_last_at(tmp_path):
    p = write(tmp_path, "pb.txt", "Profit rose @ 5 % in Q3 .@positive\nSales fell .@negative\n")
    ex = load_source(SourceSpec.parse(f"sentiment:phrasebank:{p}"))
    assert ex[0].text == "Profit rose @ 5 % in Q3 ." and SENTIMENT.labels[ex[0].sentiment] == "positive"
    assert SENTIMENT.labels[ex[1].sentiment] == "negative"


def test_jsonl_topic_by_name(tmp_path):
    p = write(tmp_path, "t.jsonl", '{"text": "IPO priced", "label": "ipo"}\n\n{"text": "Fed", "label": "fed_central_banks"}\n')
    ex = load_source(SourceSpec.parse(f"topic:jsonl:{p}"))
    assert [TOPICS[e.topic] for e in ex] == ["ipo", "fed_central_banks"]


@pytest.mark.parametrize("content,match", [
    (b"text,label\n\xff\xfe,0\n", "not valid UTF-8"),
    (b"body,label\nx,0\n", "no column 'text'"),
])
def test_bad_files_name_the_problem(tmp_path, content, match):
    p = write(tmp_path, "bad.csv", content)
    with pytest.raises(DataError, match=match):
        read_rows(p, "csv")


def test_missing_file_and_bad_spec():
    with pytest.raises(DataError, match="no such file"):
        read_rows(Path("/nonexistent/x.csv"), "csv")
    with pytest.raises(DataError, match="TASK:FORMAT:PATH"):
        SourceSpec.parse("sentiment.csv")
    with pytest.raises(DataError, match="unknown task"):
        SourceSpec.parse("mood:csv:x.csv")


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    rows = "".join(f"t{i},{i % 3}\n" for i in range(300)) + "rare,ipo\n"
    p = write(tmp_path, "t.csv", "text,label\n" + rows.replace(",0\n", ",earnings\n").replace(",1\n", ",macro\n").replace(",2\n", ",markets\n"))
    ex = load_source(SourceSpec.parse(f"topic:csv:{p}"))
    a_train, a_dev = stratified_split(ex, 0.1, seed=5)
    b_train, b_dev = stratified_split(ex, 0.1, seed=5)
    _, c_dev = stratified_split(ex, 0.1, seed=6)
    assert a_dev == b_dev and a_train == b_train and set(c_dev) != set(a_dev)
    assert len(a_dev) == 30 and len(a_train) == 271
    assert any(TOPICS[e.topic] == "ipo" for e in a_train)  # a singleton class stays in training
    per_class = {t: sum(TOPICS[e.topic] == t for e in a_dev) for t in ("earnings", "macro", "markets")}
    assert per_class == {"earnings": 10, "macro": 10, "markets": 10}
