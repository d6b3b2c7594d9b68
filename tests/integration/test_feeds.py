"""`finsent replay` and `finsent simulate` against the real broker."""

import subprocess
import sys

import orjson
import pytest

from finsent.services import worker_env

pytestmark = pytest.mark.slow


def cli(stack, *args):
    env = worker_env(stack.kafka.bootstrap, stack.url, **stack.env_overrides)
    return subprocess.run([sys.executable, "-m", "finsent.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_replay_jsonl_routes_by_source_and_keeps_bad_lines(stack, tmp_path):
    f = tmp_path / "feed.jsonl"
    good = [{"id": str(i), "source": "social-x" if i % 2 else "wire-a", "text": f"item {i}",
             "published_at": "2026-01-05T10:00:00Z"} for i in range(20)]
    f.write_bytes(b"\n".join(orjson.dumps(e) for e in good) + b"\nnot json\n")
    res = cli(stack, "replay", str(f), "--rate", "500")
    assert res.returncode == 0, res.stderr
    assert "sent 21 messages" in res.stdout + res.stderr
    news = stack.read_topic(stack.settings.topic_news, expect=11)
    social = stack.read_topic(stack.settings.topic_social, expect=10)
    assert len(news) == 11 and len(social) == 10
    assert {m.key for m in social} == {str(i).encode() for i in range(1, 20, 2)}
    assert b"not json" in {m.value for m in news}


def test_replay_missing_file_is_a_clear_error(stack, tmp_path):
    res = cli(stack, "replay", str(tmp_path / "nope.jsonl"))
    assert res.returncode == 2 and "no such file" in (res.stdout + res.stderr)


def test_simulate_with_surge(stack):
    res = cli(stack, "simulate", "--n", "300", "--rate", "0", "--surge-ticker", "ACME", "--surge-at", "100",
              "--surge-count", "30")
    assert res.returncode == 0, res.stderr
    msgs = stack.read_topic(list(stack.settings.input_topics), expect=300)
    assert len(msgs) == 300
    events = [orjson.loads(m.value) for m in msgs]
    assert len({e["id"] for e in events}) == 300 and {e["source"] for e in events} >= {"social-x", "wire-a"}
    acme_surge = [e for e in events if int(e["id"].rsplit("-", 1)[1]) in range(100, 130)]
    assert all("ACME" in e["text"] or "Acme" in e["text"] for e in acme_surge)
