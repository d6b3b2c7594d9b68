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


def test_cuda_io_copies_and_reads_on_its_own_stream():
    """The TensorRT backend's device side without TensorRT: copies in, NaN-filled outputs (so an
    unwritten one is caught) and copies out, all on one stream, synchronised before reading."""
    import numpy as np

    from models.tensorrt import CudaIO

    io = CudaIO("cuda")
    ids = np.arange(12, dtype=np.int32).reshape(3, 4)
    with io.scope():
        assert torch.cuda.current_stream() == io.stream
        back, unwritten = io.fetch([io.put(ids), io.empty((3, 2), np.dtype(np.float16))])
    np.testing.assert_array_equal(back, ids)
    assert unwritten.dtype == np.float16 and np.isnan(unwritten).all()
