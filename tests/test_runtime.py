"""Backend parity and runtime behaviour on the committed model (tolerances from models.export)."""

import sys

import numpy as np
import pytest

from models.export import FP32_ATOL, INT8_MIN_AGREEMENT, compare
from models.runtime import InvalidText, Scorer, pad_chunk

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def torch_ref(artifact):
    return Scorer.from_artifact(artifact, backend="torch", precision="fp32")


def test_onnx_fp32_matches_pytorch(artifact, torch_ref, real_texts):
    p = compare(torch_ref, Scorer.from_artifact(artifact, backend="onnx", precision="fp32"), real_texts)
    assert p.max_prob_diff <= FP32_ATOL
    assert p.topic_agreement == 1.0 and p.sentiment_agreement == 1.0


def test_onnx_int8_argmax_agreement(artifact, torch_ref, real_texts):
    p = compare(torch_ref, Scorer.from_artifact(artifact, backend="onnx", precision="int8"), real_texts)
    assert len(real_texts) >= 300
    assert p.topic_agreement >= INT8_MIN_AGREEMENT and p.sentiment_agreement >= INT8_MIN_AGREEMENT


def test_batch_composition_does_not_change_results(artifact, real_texts):
    """Length bucketing and per-chunk padding must not leak between texts."""
    s = Scorer.from_artifact(artifact, backend="onnx", precision="fp32", max_batch=7)
    together = s.probabilities(real_texts[:40])[1]
    alone = np.concatenate([s.probabilities([t])[1] for t in real_texts[:40]])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_predictions_are_well_formed_and_in_input_order(artifact):
    s = Scorer.from_artifact(artifact)
    texts = ["$XYZ plunges 30% after fraud allegations, CEO arrested",
             "Company reports record profit and raises dividend; shares soar",
             "Fed raises interest rates by 25 basis points"]
    preds = s.predict(texts)
    assert [p.sentiment for p in preds[:2]] == ["negative", "positive"]
    assert preds[2].topic == "fed_central_banks"
    for p in preds:
        assert sum(p.topic_probs.values()) == pytest.approx(1, abs=1e-4)
        assert sum(p.sentiment_probs.values()) == pytest.approx(1, abs=1e-4)
        assert p.score == pytest.approx(p.sentiment_probs["positive"] - p.sentiment_probs["negative"], abs=1e-5)
        assert p.model_version == s.version == "finsent-minilm-v1"


def test_long_text_is_truncated_not_padded_to_512(artifact):
    s = Scorer.from_artifact(artifact)
    long = ("Shares fell sharply after the company warned on profits. " * 2000)[:100_000]
    pred = s.predict([long, "short tweet $AAPL"])
    assert pred[0].truncated and not pred[1].truncated
    ids, _ = s.tokenizer.encode(["short tweet $AAPL"])
    assert pad_chunk(ids, 0)[0].shape[1] < 16


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_invalid_texts_raise_with_index(artifact, bad):
    s = Scorer.from_artifact(artifact)
    with pytest.raises(InvalidText) as err:
        s.predict(["fine text", bad])
    assert list(err.value.errors) == [1]


def test_onnx_path_does_not_import_torch(artifact):
    import subprocess

    code = ("import sys; from models.runtime import Scorer; "
            f"Scorer.from_artifact(r'{artifact}').predict(['oil rallies']); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_length_buckets_bound_padding_and_batch():
    from models.runtime import MAX_PAD_WASTE, length_buckets

    lengths = [5, 40, 6, 120, 7, 41, 5, 5, 39, 118] * 10
    chunks = length_buckets(lengths, max_batch=8)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    for c in chunks:
        assert len(c) <= 8
        real = sum(lengths[i] for i in c)
        assert len(c) * max(lengths[i] for i in c) <= real * (1 + MAX_PAD_WASTE)
