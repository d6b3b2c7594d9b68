"""models/quantize.py: the int8 item graph's recipe (int8 weights, any batch and length, agreement
with fp32 on real text), the static recipe's calibration, and the agreement / margin arithmetic."""

import numpy as np
import pytest

from models.artifact import Meta
from models.quantize import (ENCODER_OPS, Recipe, agreement, calibration_batches, int8_weight_count, margin_for,
                             near_tie, op_types, quantize_item_graph)
from models.runtime import OnnxBackend, Scorer, Tokenizer

# On the project's own feed texts (real_texts[:1500]): argmax agreement with fp32 per head of the
# default recipe alone, and after the fp32 recheck at RECHECK_MARGIN (the margin docs/quantize.md
# recommends from held-out real text), with the share it may send to fp32.
FLOOR_ALONE = 0.96
FLOOR_RECHECKED = 0.99
RECHECK_MARGIN = 0.15
MAX_RECHECKED = 0.25


@pytest.fixture(scope="module")
def tok(artifact):
    return Tokenizer(artifact, Meta.load(artifact).max_length)


@pytest.fixture(scope="module")
def int8_graph(artifact, tmp_path_factory, real_texts, tok):
    out = tmp_path_factory.mktemp("quantize") / "model.int8.onnx"
    return quantize_item_graph(artifact / "model.onnx", out, real_texts[-64:], tok)


@pytest.mark.slow
def test_graph_has_int8_weights(int8_graph):
    ops = op_types(int8_graph)
    assert ops.count("QAttention") == 6 and ops.count("MatMulInteger") >= 18  # every encoder layer, the heads
    assert "QEmbedLayerNormalization" in ops and "Attention" not in ops
    assert int8_weight_count(int8_graph) >= 24


@pytest.mark.slow
def test_excluded_nodes_stay_fp32(artifact, tmp_path):
    out = quantize_item_graph(artifact / "model.onnx", tmp_path / "part.onnx",
                              recipe=Recipe("dynamic", True, ENCODER_OPS, ("layer.0/", "Attention_0", "_head/")))
    ops, fp32 = op_types(out), op_types(artifact / "model.onnx")
    assert ops.count("Attention") == 1 and ops.count("QAttention") == 5
    # layer 0's three and the two heads (a Gemm the quantiser rewrote as MatMul + Add) stay fp32
    assert ops.count("MatMul") == 5 and ops.count("MatMulInteger") == fp32.count("MatMul") - 3
    assert "EmbedLayerNormalization" in ops


@pytest.mark.slow
@pytest.mark.parametrize("batch,width", [(1, 3), (5, 37), (9, 128), (64, 20)])
def test_graph_runs_on_any_batch_and_length(artifact, int8_graph, batch, width):
    rng = np.random.default_rng(batch * 1000 + width)
    ids = rng.integers(1000, 20000, size=(batch, width), dtype=np.int64)
    mask = np.ones_like(ids)
    for i, n in enumerate(rng.integers(1, width + 1, size=batch)):  # right padding, as the runtime pads
        ids[i, n:], mask[i, n:] = 0, 0
    topic, sentiment = OnnxBackend(int8_graph, threads=1).infer(ids, mask)
    ref = OnnxBackend(artifact / "model.onnx", threads=1).infer(ids, mask)
    assert topic.shape == (batch, 20) and sentiment.shape == (batch, 3)
    assert np.isfinite(topic).all() and np.isfinite(sentiment).all()
    assert max(np.abs(topic - ref[0]).max(), np.abs(sentiment - ref[1]).max()) < 2.0


@pytest.mark.slow
def test_graph_agrees_with_fp32_on_real_text(artifact, int8_graph, real_texts, tok):
    meta = Meta.load(artifact)
    texts = real_texts[:1500]
    ref = Scorer(OnnxBackend(artifact / "model.onnx", threads=1), tok, meta).logits(texts)[:2]
    got = Scorer(OnnxBackend(int8_graph, threads=1), tok, meta).logits(texts)[:2]
    topic, sentiment, _ = agreement(ref, got)
    assert min(topic, sentiment) >= FLOOR_ALONE, (topic, sentiment)
    topic, sentiment, fired = agreement(ref, got, RECHECK_MARGIN)
    assert min(topic, sentiment) >= FLOOR_RECHECKED and 0 < fired < MAX_RECHECKED, (topic, sentiment, fired)


@pytest.mark.slow
def test_static_recipe_quantises_activations(artifact, tmp_path, real_texts, tok):
    """quantize_static on the fused graph calibrates nothing unless the graph carries shapes
    (then it writes weights-only QDQ): the static recipe must quantise activations."""
    out = quantize_item_graph(artifact / "model.onnx", tmp_path / "static.onnx", real_texts[:24], tok,
                              Recipe("minmax", True, ("MatMul",)))
    assert op_types(out).count("QuantizeLinear") >= 6
    with pytest.raises(ValueError, match="calibration_texts"):
        quantize_item_graph(artifact / "model.onnx", tmp_path / "x.onnx", [], tok, Recipe("minmax"))


def test_calibration_batches_cover_every_length_padded_per_bucket():
    class Tok:
        pad_id = 0

        def encode(self, texts):
            return [[7] * len(t.split()) for t in texts], [False] * len(texts)

    texts = [" ".join(["w"] * n) for n in (3, 50, 4, 120, 3, 51, 49, 5)]
    feeds = calibration_batches(texts, Tok(), max_batch=4)
    assert sum(len(f["input_ids"]) for f in feeds) == len(texts)
    widths = sorted(f["input_ids"].shape[1] for f in feeds)
    assert widths[0] <= 5 and widths[-1] == 120 and len(set(widths)) >= 3  # not one padded shape
    for f in feeds:
        assert (f["attention_mask"].sum(1).max()) == f["input_ids"].shape[1]  # padded to its own longest


def test_margin_for_finds_the_margin_that_covers_the_flips():
    rng = np.random.default_rng(3)
    ref = (rng.normal(size=(1000, 20)).astype(np.float32), rng.normal(size=(1000, 3)).astype(np.float32))
    got = (ref[0].copy(), ref[1].copy())
    # flip the sentiment argmax of 10 rows, made near-ties (margin 0.01 on the int8 side)
    rows = np.arange(10)
    got[1][rows] = np.array([0.51, 0.49, -5.0], dtype=np.float32)
    ref[1][rows] = np.array([0.49, 0.51, -5.0], dtype=np.float32)
    t, s, _ = agreement(ref, got)
    assert t == 1.0 and s == pytest.approx(0.99)
    m, fired = margin_for(ref, got, 0.999)
    assert 0 < m <= 0.02 and fired == pytest.approx((near_tie(*got) < m).mean())
    assert min(agreement(ref, got, m)[:2]) == 1.0
    assert margin_for(ref, got, 0.99) == (0.0, 0.0)

