"""Per-entity sentiment (models/entity_sentiment.py, Scorer.entity_sentiment): the inputs built from
character spans, the two-entity builder, the head on the item graph's token states against the
PyTorch reference, the int8 states' recheck, the design rule (one entity keeps the item's
sentiment), and that the head reads the target on hand-written two-entity sentences."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.entity_sentiment import (MAX_DISTANCE, ONNX_ATOL, PAD_BUCKET, Item, build_pairs, has_head,
                                     is_boundary, pad_pairs, target_features)
from models.runtime import DEFAULT_ARTIFACT, BackendUnavailable, EntitySentiment, Scorer

# opposite tone, the company named in either clause; none of these is in any training file
OPPOSITE = [
    ("Apple beats estimates, Samsung slides on weak phone sales", "Apple", "Samsung", "positive", "negative"),
    ("Ford shares tumble after recall, while Toyota raises its profit forecast", "Ford", "Toyota", "negative",
     "positive"),
    ("Netflix subscriber growth soars; Disney cuts guidance and shares fall", "Netflix", "Disney", "positive",
     "negative"),
    ("Boeing plunges after crash report as Airbus wins record order", "Boeing", "Airbus", "negative", "positive"),
    ("Microsoft posts record cloud revenue, but Intel warns of a weak quarter", "Microsoft", "Intel", "positive",
     "negative"),
    ("Pfizer drops 6% on failed trial while Merck rallies on strong sales", "Pfizer", "Merck", "negative",
     "positive"),
]

needs_head = pytest.mark.skipif(not has_head(DEFAULT_ARTIFACT), reason="the artifact has no entity head")


def _span(text: str, name: str) -> list[list[int]]:
    i = text.index(name)
    return [[i, i + len(name)]]


def test_target_features_mark_overlapping_tokens_and_signed_distance():
    # [CLS] Apple beats , Samsung slides [SEP]: special tokens have (0, 0) offsets
    offsets = [(0, 0), (0, 5), (6, 11), (11, 12), (13, 20), (21, 27), (0, 0)]
    mask, dist = target_features(offsets, [(13, 20)], len(offsets))
    assert mask.tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert (dist - MAX_DISTANCE).tolist() == [-4, -3, -2, -1, 0, 1, 2]
    # two spans: distance to the nearest; a partial overlap counts
    mask, dist = target_features(offsets, [(0, 3), (21, 27)], len(offsets))
    assert mask.tolist() == [0, 1, 0, 0, 0, 1, 0]
    assert (dist - MAX_DISTANCE).tolist() == [-1, 0, 1, 2, -1, 0, 1]
    # a target cut off by truncation: no target token, every token in the farthest bucket
    mask, dist = target_features(offsets, [(500, 507)], len(offsets))
    assert mask.sum() == 0 and set(dist.tolist()) == {PAD_BUCKET - 1}


def test_buckets_count_clause_boundaries_between_token_and_target():
    text = "Apple beats, Samsung slides"
    offsets = [(0, 0), (0, 5), (6, 11), (11, 12), (13, 20), (21, 27), (0, 0)]
    width = 2 * MAX_DISTANCE + 1
    _, dist = target_features(offsets, [(13, 20)], len(offsets), text)
    crossed, signed = (dist // width).tolist(), (dist % width - MAX_DISTANCE).tolist()
    assert signed == [-4, -3, -2, -1, 0, 1, 2]
    # 'Apple beats' lies across the comma from Samsung; the comma itself and 'slides' do not
    assert crossed == [1, 1, 1, 0, 0, 0, 0]
    _, dist = target_features(offsets, [(0, 5)], len(offsets), text)
    assert (dist // width).tolist() == [0, 0, 0, 0, 1, 1, 1]
    # 'while', 'but', 'as' end a clause; 'after' does not
    assert is_boundary("while") and is_boundary(";") and is_boundary(" - ") and not is_boundary("after")


def test_distance_is_clipped_and_padding_has_its_own_bucket():
    offsets = [(i, i + 1) for i in range(40)]
    _, dist = target_features(offsets, [(0, 1)], 40)
    assert dist.max() == 2 * MAX_DISTANCE and dist.min() == MAX_DISTANCE  # no text: no boundaries
    rows = [([1, 2, 3], np.array([0, 1, 0]), np.array([11, 12, 13])), ([1], np.array([1]), np.array([12]))]
    batch = pad_pairs(rows, 0)
    assert batch["distance"][1].tolist() == [12, PAD_BUCKET, PAD_BUCKET]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_built_pairs_point_each_entity_at_its_own_clause():
    singles = [Item("Apple beats estimates", [[0, 5]], 2, "s", "a", "AAPL"),
               Item("Samsung slides on weak sales", [[0, 7]], 0, "s", "b", "SSNLF"),
               Item("IBM holds its dividend", [[0, 3]], 1, "s", "c", "IBM"),
               Item("Shares of Tesla rise", [[10, 15]], 2, "s", "d", "TSLA"),
               Item("Intel warns on margins", [[0, 5]], 0, "s", "e", "INTC")]
    pairs = build_pairs(singles, 200, seed=1)
    assert 300 < len(pairs) <= 400 and len(pairs) % 2 == 0
    for a, b in zip(pairs[::2], pairs[1::2]):
        assert a.text == b.text and a.group == b.group and a.ticker != b.ticker
        names = {"AAPL": "Apple", "SSNLF": "Samsung", "IBM": "IBM", "TSLA": "Tesla", "INTC": "Intel"}
        for it in (a, b):
            assert it.text[it.spans[0][0]:it.spans[0][1]] == names[it.ticker]
        assert b.spans[0][0] > a.spans[0][0]
    labels = [{a.label, b.label} for a, b in zip(pairs[::2], pairs[1::2])]
    opposite = sum(x == {0, 2} for x in labels) / len(labels)
    assert 0.35 < opposite < 0.65 and any(len(x) == 1 for x in labels)  # same-label pairs exist too


@pytest.fixture(scope="module")
def onnx_scorer(artifact):
    return Scorer.from_artifact(artifact, backend="onnx", precision="fp32")


@pytest.fixture(scope="module")
def torch_scorer(artifact):
    return Scorer.from_artifact(artifact, backend="torch", precision="fp32")


def _pairs():
    out = []
    for text, a, b, *_ in OPPOSITE:
        out += [(text, _span(text, a)), (text, _span(text, b))]
    return out + [("$TSLA down 8% premarket after deliveries miss estimates", [[0, 5]]),
                  ("Gold hits record as dollar weakens", [[0, 4]])]


@needs_head
def test_onnx_matches_pytorch_within_tolerance(onnx_scorer, torch_scorer):
    pairs = _pairs()
    got, ref = onnx_scorer.entity_sentiment(pairs), torch_scorer.entity_sentiment(pairs)
    diff = max(abs(g.probs[k] - r.probs[k]) for g, r in zip(got, ref) for k in r.probs)
    assert diff < ONNX_ATOL, diff
    assert [g.sentiment for g in got] == [r.sentiment for r in ref]
    # batch composition does not change a row (length buckets, padding)
    one = [onnx_scorer.entity_sentiment([p])[0] for p in pairs[:4]]
    assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(one, got[:4]))


@needs_head
def test_an_int8_scorer_reads_int8_states_and_rechecks_near_ties_on_fp32_states(artifact, onnx_scorer):
    """The int8 item graph's token states are read first; a pair whose top-2 margin on them is under
    the shipped margin gets exactly the fp32 path's answer, the others the int8 states' own."""
    from models.entity_inputs import INT8_RECHECK_MARGIN
    from models.runtime import top2_margin

    pairs = _pairs()
    ref = onnx_scorer.entity_sentiment(pairs)
    alone = Scorer.from_artifact(artifact, backend="onnx", precision="int8", recheck_margin=0)
    alone.entity_recheck_margin = 0.0
    raw = alone.entity_sentiment(pairs)
    fast = Scorer.from_artifact(artifact, backend="onnx", precision="int8", recheck_margin=0)
    assert fast.entity_recheck_margin == INT8_RECHECK_MARGIN
    got = fast.entity_sentiment(pairs)
    low = top2_margin(np.log(np.array([[r.probs[k] for k in r.probs] for r in raw])))
    assert fast.entity_rechecked == int((low < INT8_RECHECK_MARGIN).sum()) > 0
    assert 0 < fast.entity_fp32_texts <= fast.entity_rechecked  # whole texts encoded again, in fp32
    for g, r, q, m in zip(got, ref, raw, low):
        want = r if m < INT8_RECHECK_MARGIN else q
        assert g.sentiment == want.sentiment and abs(g.score - want.score) < 1e-4
    assert sum(g.sentiment == r.sentiment for g, r in zip(got, ref)) >= len(pairs) - 1


@needs_head
def test_the_head_reads_the_states_predict_computed_without_another_encoder_pass(artifact, onnx_scorer):
    """After predict, the head runs on the item pass's token states (no encoder pass of its own),
    with the same answers as a scorer that has to encode the texts for the head."""
    pairs = _pairs()
    texts = sorted({t for t, _ in pairs})
    warm = Scorer.from_artifact(artifact, backend="onnx", precision="fp32")
    warm.predict(texts)
    got = warm.entity_sentiment(pairs)
    assert warm.entity_reencoded == 0 and warm.entity_pairs == len(pairs)
    cold = Scorer.from_artifact(artifact, backend="onnx", precision="fp32")
    fresh = cold.entity_sentiment(pairs)
    assert cold.entity_reencoded == len(texts)
    assert all(abs(a.score - b.score) < 1e-5 and a.sentiment == b.sentiment for a, b in zip(got, fresh))
    # a text predict never saw (a clause) is encoded once for the head
    warm.entity_sentiment([("Samsung slides on weak phone sales", [[0, 7]])])
    assert warm.entity_reencoded == 1


@needs_head
def test_int8_states_of_rows_the_item_recheck_rescored_are_fp32_states(artifact, onnx_scorer, real_texts):
    """RecheckedBackend swaps in the fp32 graph's states where it swaps in its logits."""
    texts = real_texts[:120]
    fp32 = onnx_scorer
    fp32.predict(texts)
    shipped = Scorer.from_artifact(artifact, backend="onnx", precision="int8", recheck_margin=0.2)
    shipped.predict(texts)
    exact = [t for t in texts if shipped.states.get(t)[1]]
    assert 0 < len(exact) < len(texts) and len(exact) == shipped.backend.rechecked
    for t in exact:
        np.testing.assert_allclose(shipped.states.get(t)[0], fp32.states.get(t)[0], atol=1e-4)
    t = next(t for t in texts if t not in exact)
    assert np.abs(shipped.states.get(t)[0] - fp32.states.get(t)[0]).max() > 1e-3  # int8's own


def test_numpy_head_equals_the_torch_head():
    import torch

    from models.entity_head import NumpyHead, load_head

    ref, head = load_head(DEFAULT_ARTIFACT), NumpyHead.load(DEFAULT_ARTIFACT)
    rng = np.random.default_rng(0)
    for n in (3, 37, 128):
        hidden = rng.normal(size=(n, 384)).astype(np.float32)
        targets = (rng.random((3, n)) < 0.2).astype(np.int64)
        targets[2] = 0  # a target truncated away
        buckets = rng.integers(0, PAD_BUCKET, size=(3, n))
        with torch.inference_mode():
            want = ref(torch.from_numpy(np.repeat(hidden[None], 3, 0)), torch.ones(3, n, dtype=torch.long),
                       torch.from_numpy(targets), torch.from_numpy(buckets)).numpy()
        np.testing.assert_allclose(head.logits(hidden, targets, buckets), want, atol=1e-5)


def test_the_head_tokenises_as_the_item_pass_does(committed_tokenizer):
    """Same ids (special tokens, truncation at max_length) in the item pass and the head's inputs,
    so the item's token states line up with the target masks."""
    from models.entity_inputs import encode_pairs

    tok, max_length = committed_tokenizer
    texts = ["Apple beats estimates, Samsung slides", "$TSLA down 8%", "Shares rise. " * 60 + "Intel warns.",
             "Nvidia https://t.co/fkjejypxb9 beats, AMD slides https://t.co/dfyupsotme"]
    spans = [[(0, 5)]] * 3 + [[(38, 41)]]
    ids, _ = tok.encode(texts)
    rows = encode_pairs(tok, texts, spans, max_length)
    assert [r[0] for r in rows] == ids and len(ids[2]) == max_length
    assert all(len(r[1]) == len(r[2]) == len(x) for r, x in zip(rows, ids))
    # a web address is its scheme word alone, and the target ("AMD") is still found after it
    words = tok.tok.decode(ids[3]).split()
    target = [i for i, m in zip(ids[3], rows[3][1]) if m]
    assert words.count("https") == 2 and "co" not in words and tok.tok.decode(target) == "amd"


@pytest.fixture(scope="module")
def committed_tokenizer():
    from models.runtime import Meta, Tokenizer

    meta = Meta.load(DEFAULT_ARTIFACT)
    return Tokenizer(DEFAULT_ARTIFACT, meta.max_length), meta.max_length


def test_state_cache_drops_the_oldest_past_its_bound():
    from models.runtime import StateCache

    cache = StateCache(max_bytes=3 * 4 * 10 * 384)
    for i in range(5):
        cache.put(f"t{i}", np.zeros((10, 384), np.float32), True)
    assert [cache.get(f"t{i}") is None for i in range(5)] == [True, True, False, False, False]
    assert cache.bytes == 3 * 4 * 10 * 384
    cache.put("t2", np.zeros((5, 384), np.float32), False)  # replaced, not counted twice
    assert cache.bytes == 2 * 4 * 10 * 384 + 4 * 5 * 384 and cache.get("t2")[1] is False


@needs_head
def test_the_head_reads_the_target_on_opposite_tone_sentences(onnx_scorer):
    """Hand-written, opposite tone, each company in either position: the item sentiment gives both
    the same label, so it is right on one of the two at most; the head should get both."""
    pairs = _pairs()[: 2 * len(OPPOSITE)]
    got = onnx_scorer.entity_sentiment(pairs)
    both = sum(got[2 * i].sentiment == pa and got[2 * i + 1].sentiment == pb
               for i, (_, _, _, pa, pb) in enumerate(OPPOSITE))
    assert both >= len(OPPOSITE) - 1, [(p[0][:30], g.sentiment) for p, g in zip(pairs, got)]


@needs_head
def test_results_are_distributions_in_input_order(onnx_scorer):
    text = "Apple beats estimates, Samsung slides on weak phone sales"
    a, b = onnx_scorer.entity_sentiment([(text, _span(text, "Apple")), (text, _span(text, "Samsung"))])
    b2, a2 = onnx_scorer.entity_sentiment([(text, _span(text, "Samsung")), (text, _span(text, "Apple"))])
    assert (a.score, b.score) == (a2.score, b2.score)
    for r in (a, b):
        assert isinstance(r, EntitySentiment) and r.source == "entity_head"
        assert abs(sum(r.probs.values()) - 1) < 1e-4 and r.sentiment == max(r.probs, key=r.probs.get)
        assert abs(r.score - (r.probs["positive"] - r.probs["negative"])) < 1e-5
    assert onnx_scorer.entity_sentiment([]) == []


@needs_head
def test_a_target_beyond_the_token_limit_still_gets_a_distribution(onnx_scorer):
    text = "Shares rise. " * 60 + "Intel warns."
    (r,) = onnx_scorer.entity_sentiment([(text, _span(text, "Intel"))])
    assert abs(sum(r.probs.values()) - 1) < 1e-4


@needs_head
def test_one_entity_keeps_the_item_sentiment_several_use_the_head(onnx_scorer):
    texts = ["Apple beats estimates, Samsung slides on weak phone sales", "Boeing grounds 737 MAX fleet after crash",
             "Fed holds rates steady"]
    spans = [[_span(texts[0], "Apple"), _span(texts[0], "Samsung")], [_span(texts[1], "Boeing")], []]
    preds = onnx_scorer.predict(texts)
    out = onnx_scorer.entities_sentiment(texts, spans, preds)
    assert [len(x) for x in out] == [2, 1, 0]
    assert out[1][0] == EntitySentiment(preds[1].sentiment, preds[1].score, preds[1].sentiment_probs, "item")
    assert out[0] == onnx_scorer.entity_sentiment([(texts[0], s) for s in spans[0]])
    assert [r.source for r in out[0]] == ["entity_head", "entity_head"]


@needs_head
def test_item_outputs_are_unchanged_by_the_entity_head(artifact, onnx_scorer, real_texts):
    """The head reads the item graph's token states: scoring entities between two predict calls
    changes nothing, and predict matches a scorer that never ran the head."""
    texts = real_texts[:64]
    before = [p.to_dict() for p in onnx_scorer.predict(texts)]
    onnx_scorer.entity_sentiment(_pairs())
    assert [p.to_dict() for p in onnx_scorer.predict(texts)] == before
    fresh = Scorer.from_artifact(artifact, backend="onnx", precision="fp32")
    assert [p.to_dict() for p in fresh.predict(texts)] == before


@needs_head
def test_graphs_without_token_states_or_no_head_are_a_clear_error(artifact, tmp_path):
    """An item graph built before it output its token states: the head refuses, saying how to rebuild."""
    from models.export import without_states

    d = tmp_path / "a"
    shutil.copytree(artifact, d, ignore=shutil.ignore_patterns("*.onnx"))
    without_states(artifact / "model.onnx", d / "model.onnx")
    old = Scorer.from_artifact(d, backend="onnx", precision="fp32")
    assert old.states is None and old.predict(["Apple rises"])[0].sentiment  # the item path is unchanged
    with pytest.raises(BackendUnavailable, match="no last_hidden_state output.*finsent export"):
        old.entity_sentiment([("Apple rises", [[0, 5]])])
    (d / "entity_head.safetensors").unlink()
    with pytest.raises(BackendUnavailable, match="no per-entity sentiment head"):
        Scorer.from_artifact(d, backend="onnx", precision="fp32").entity_sentiment([("Apple rises", [[0, 5]])])


# --- clause scoping (models.entities.clauses) and the shipped reading (models.entity_scores) ---------------


def _spans(text: str, *names: str) -> list[list[tuple[int, int]]]:
    return [[(text.index(n), text.index(n) + len(n))] for n in names]


@pytest.mark.parametrize("text,a,b,want_a,want_b", [
    ("Apple beats estimates, while Samsung slides", "Apple", "Samsung", "Apple beats estimates", "Samsung slides"),
    ("Shares of Ford tumble after a recall; Toyota raises its forecast", "Ford", "Toyota",
     "Shares of Ford tumble after a recall", "Toyota raises its forecast"),
    ("Boeing plunges after crash report as Airbus wins record order", "Boeing", "Airbus",
     "Boeing plunges after crash report", "Airbus wins record order"),
    ("Intel warns of a weak quarter. Meanwhile, shares of Nvidia soar", "Intel", "Nvidia",
     "Intel warns of a weak quarter", "Meanwhile, shares of Nvidia soar"),
])
def test_scopes_cut_at_the_strongest_boundary_between_two_companies(text, a, b, want_a, want_b):
    from models.entities.clauses import scopes

    assert scopes(text, _spans(text, a, b)) == [want_a, want_b]


def test_scopes_leave_no_clause_where_the_names_share_one():
    from models.entities.clauses import scopes

    for text in ("Apple and Samsung slide on tariff fears", "Apple, Samsung slide", "Apple vs Samsung: who wins?"):
        assert scopes(text, _spans(text, "Apple", "Samsung")) == [None, None], text
    # the same company twice around a boundary is one scope; no spans, no scope
    text = "Apple beats; Apple shares jump, while Samsung slides"
    spans = [[(0, 5), (13, 18)], [(text.index("Samsung"), text.index("Samsung") + 7)]]
    assert scopes(text, spans + [[]]) == ["Apple beats; Apple shares jump", "Samsung slides", None]


class _Head:
    """A stand-in scorer: the head reads 'negative' when its input holds 'slides', else 'positive'."""

    def __init__(self):
        self.calls = []

    def entity_sentiment(self, pairs):
        self.calls.append(list(pairs))
        neg = {"negative": 0.8, "neutral": 0.1, "positive": 0.1}
        pos = {"negative": 0.1, "neutral": 0.1, "positive": 0.8}
        return [EntitySentiment("negative" if "slides" in t else "positive", 0.0, neg if "slides" in t else pos)
                for t, _ in pairs]


def _entity(ticker, text, name, relevance=0.9):
    from models.entities import Entity

    i = text.index(name)
    return Entity(ticker, name, relevance, ((i, i + len(name)),), ("name",))


def test_entity_sentiments_average_the_whole_text_and_the_own_clause():
    from types import SimpleNamespace

    from models.entity_scores import HEAD, ITEM_SHARED, entity_sentiments

    text = "Apple beats estimates, while Samsung slides"
    ents = [_entity("AAPL", text, "Apple"), _entity("SSNLF", text, "Samsung")]
    scorer = _Head()
    (out,) = entity_sentiments(scorer, [(text, SimpleNamespace(sentiment="neutral", score=0.0))], [ents])
    (pairs,) = scorer.calls
    assert [t for t, _ in pairs] == [text, "Apple beats estimates", text, "Samsung slides"]
    assert pairs[3][1] == [[0, 7]]  # the entity's span, moved into its clause
    # whole text reads negative for both (it holds 'slides'); Apple's own clause pulls it to neutral-ish
    assert [o.source for o in out] == [HEAD, HEAD]
    assert out[1].sentiment == "negative" and out[0].score == pytest.approx(0.0, abs=1e-6)
    # below the relevance cut (not counted, e.g. a name after '; '): still its own reading, not the item's
    ents[1] = _entity("SSNLF", text, "Samsung", relevance=0.2)
    (out,) = entity_sentiments(_Head(), [(text, SimpleNamespace(sentiment="neutral", score=0.0))], [ents])
    assert [o.source for o in out] == [HEAD, HEAD] and out[1].sentiment == "negative"
    # a feed tag the text never names has no span to read: the item's sentiment, shared
    from models.entities import Entity

    ents[1] = Entity("SSNLF", "Samsung", 1.0, (), ("tag",))
    (out,) = entity_sentiments(_Head(), [(text, SimpleNamespace(sentiment="neutral", score=0.0))], [ents])
    assert out[1].source == ITEM_SHARED and out[0].source == HEAD


def test_counted_entities_go_through_the_head_before_uncounted_ones():
    from types import SimpleNamespace

    from models.entity_scores import HEAD, HEAD_MAX_ENTITIES, ITEM_SHARED, entity_sentiments

    text = "$AAA $BBB $CCC $DDD slides"
    ents = [_entity(t[1:], text, t, relevance=r) for t, r in zip(text.split()[:4], (0.3, 0.9, 0.2, 0.8))]
    (out,) = entity_sentiments(_Head(), [(text, SimpleNamespace(sentiment="neutral", score=0.0))], [ents],
                               min_relevance=0.5)
    assert HEAD_MAX_ENTITIES == 3
    assert [o.source for o in out] == [HEAD, HEAD, ITEM_SHARED, HEAD]  # BBB, DDD (counted), then AAA


def test_at_most_three_entities_per_item_go_through_the_head():
    from types import SimpleNamespace

    from models.entity_scores import HEAD, HEAD_MAX_ENTITIES, ITEM_SHARED, entity_sentiments

    text = "$AAA $BBB $CCC $DDD $EEE slides"
    ents = [_entity(t[1:], text, t) for t in text.split()[:5]]
    scorer = _Head()
    (out,) = entity_sentiments(scorer, [(text, SimpleNamespace(sentiment="neutral", score=0.0))], [ents])
    assert [o.source for o in out] == [HEAD] * HEAD_MAX_ENTITIES + [ITEM_SHARED] * (5 - HEAD_MAX_ENTITIES)
