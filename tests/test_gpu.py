"""GPU backends against the ONNX fp32 reference. These run only where CUDA is present (and,
for TensorRT, where `import tensorrt` works); on CPU-only machines, CI included, they are
reported as skipped, never as passed."""

import pytest

from models.export import compare
from models.runtime import Scorer

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FP16_ATOL = 2e-2  # probabilities; fp16 activations round at ~1e-3 relative
FP16_MIN_AGREEMENT = 0.99


def test_torch_fp16_cuda_matches_onnx_fp32(artifact, real_texts):
    ref = Scorer.from_artifact(artifact, backend="onnx", precision="fp32")
    p = compare(ref, Scorer.from_artifact(artifact, backend="torch", precision="fp16", device="cuda"), real_texts)
    assert p.max_prob_diff <= FP16_ATOL
    assert p.topic_agreement >= FP16_MIN_AGREEMENT and p.sentiment_agreement >= FP16_MIN_AGREEMENT


def test_tensorrt_fp16_engine_matches_onnx_fp32(artifact, real_texts):
    pytest.importorskip("tensorrt")
    from models.tensorrt import TensorRTBackend, build_engine

    engine = build_engine(artifact / "model.onnx", artifact)
    ref = Scorer.from_artifact(artifact, backend="onnx", precision="fp32")
    trt = Scorer(TensorRTBackend(engine), ref.tokenizer, ref.meta, max_batch=64)
    p = compare(ref, trt, real_texts)
    assert p.max_prob_diff <= FP16_ATOL
    assert p.topic_agreement >= FP16_MIN_AGREEMENT and p.sentiment_agreement >= FP16_MIN_AGREEMENT
