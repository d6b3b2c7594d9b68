"""Backend parity and runtime behaviour on the committed model (tolerances from models.export)."""

import sys
import threading

import numpy as np
import pytest

from models.export import FP32_ATOL, INT8_MIN_AGREEMENT, INT8_RECHECKED_MIN_AGREEMENT, compare
from models.runtime import InvalidText, Scorer, pad_chunk, top2_margin
from tests.conftest import SHIPPED_VERSION

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def torch_ref(artifact):
    return Scorer.from_artifact(artifact, backend="torch", precision="fp32")


def test_onnx_fp32_matches_pytorch(artifact, torch_ref, real_texts):
    p = compare(torch_ref, Scorer.from_artifact(artifact, backend="onnx", precision="fp32"), real_texts)
    assert p.max_prob_diff <= FP32_ATOL
    assert p.topic_agreement == 1.0 and p.sentiment_agreement == 1.0


def test_onnx_int8_argmax_agreement(artifact, torch_ref, real_texts):
    """The int8 graph alone, then the int8 path as shipped (near-ties rechecked in fp32)."""
    alone = compare(torch_ref, Scorer.from_artifact(artifact, precision="int8", recheck_margin=0), real_texts)
    assert len(real_texts) >= 300
    assert alone.topic_agreement >= INT8_MIN_AGREEMENT and alone.sentiment_agreement >= INT8_MIN_AGREEMENT
    shipped = Scorer.from_artifact(artifact, precision="int8")
    assert shipped.meta.int8_recheck_margin > 0
    p = compare(torch_ref, shipped, real_texts)
    assert p.topic_agreement >= INT8_RECHECKED_MIN_AGREEMENT and p.sentiment_agreement >= INT8_RECHECKED_MIN_AGREEMENT
    assert p.topic_agreement > alone.topic_agreement or alone.topic_agreement == 1.0
    assert 0 < shipped.backend.rechecked < 0.5 * shipped.backend.rows  # a minority goes twice


def test_recheck_takes_fp32_answers_exactly_where_the_margin_is_low(artifact, real_texts):
    texts = real_texts[:200]
    fp32 = Scorer.from_artifact(artifact, precision="fp32").logits(texts)
    int8 = Scorer.from_artifact(artifact, precision="int8", recheck_margin=0).logits(texts)
    everything = Scorer.from_artifact(artifact, precision="int8", recheck_margin=1.01)
    np.testing.assert_allclose(everything.logits(texts)[0], fp32[0], atol=1e-4)  # all rows rechecked
    assert everything.backend.rechecked == len(texts)
    some = Scorer.from_artifact(artifact, precision="int8", recheck_margin=0.2).logits(texts)
    low = np.minimum(top2_margin(int8[0]), top2_margin(int8[1])) < 0.2
    assert 0 < low.sum() < len(texts)
    np.testing.assert_allclose(some[0][low], fp32[0][low], atol=1e-4)
    np.testing.assert_allclose(some[0][~low], int8[0][~low], atol=1e-6)


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
        assert p.model_version == s.version == SHIPPED_VERSION


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
            f"s = Scorer.from_artifact(r'{artifact}'); s.predict(['oil rallies']); "
            "s.entity_sentiment([('Apple beats, Samsung slides', [[0, 5]])]); "
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


def test_the_cpu_scorer_buckets_tighter_than_a_gpu_one_and_scores_the_same():
    """ONNX Runtime on the CPU cuts chunks at CPU_PAD_WASTE (padding costs there what real tokens
    do); the answers do not depend on how a call was cut."""
    import numpy as np

    from models.runtime import CPU_PAD_WASTE, MAX_PAD_WASTE, Scorer, length_buckets

    lengths = [20, 21, 22, 23, 24, 25, 30, 31, 40, 44] * 4
    tight, loose = length_buckets(lengths, 64, CPU_PAD_WASTE), length_buckets(lengths, 64)
    assert len(tight) > len(loose)
    for c in tight:
        assert len(c) * max(lengths[i] for i in c) <= sum(lengths[i] for i in c) * (1 + CPU_PAD_WASTE)
    assert [lengths[i] for i in length_buckets(lengths, 64, 0.0)[0]] == [20] * 4  # no padding at all
    scorer = Scorer.from_artifact(precision="fp32")
    assert scorer.pad_waste == CPU_PAD_WASTE < MAX_PAD_WASTE
    texts = ["Apple beats on revenue", "Fed holds rates steady as inflation cools further this quarter",
             "$TSLA down 5%", "Oil prices jump after OPEC cuts output, lifting energy shares across Europe"]
    tight_p = scorer.probabilities(texts)[1]
    scorer.pad_waste = 10.0  # one chunk, padded to the longest
    assert np.allclose(tight_p, scorer.probabilities(texts)[1], atol=1e-4)


# --- backend/precision/device validation (fails before anything is loaded; no GPU needed) ---

@pytest.mark.parametrize("backend, precision, device, message", [
    ("onnx", "fp16", "cpu", "onnx on cpu runs fp32 or int8, not fp16"),
    ("onnx", "int8", "cuda", "onnx on cuda runs fp32, not int8"),
    ("torch", "fp16", "cpu", "torch on cpu runs fp32, not fp16"),
    ("torch", "int8", "cuda:0", "torch on cuda runs fp32 or fp16, not int8"),
    ("tensorrt", "auto", "cpu", "tensorrt does not run on cpu"),
    ("tensorrt", "fp32", "cuda", "tensorrt on cuda runs fp16, not fp32"),
    ("onnx", "fp32", "gpu", "must be cpu, cuda or cuda:N"),
    ("openvino", "auto", "cpu", "unknown backend"),
    ("onnx", "bf16", "cpu", "unknown precision"),
])
def test_unsupported_combinations_are_refused(backend, precision, device, message):
    from models.runtime import DEFAULT_ARTIFACT, BackendUnavailable, make_backend

    with pytest.raises(BackendUnavailable, match=message):
        make_backend(DEFAULT_ARTIFACT, backend, precision, device)


@pytest.mark.parametrize("backend, device, fast_int8, precision", [
    ("onnx", "cpu", True, "int8"), ("onnx", "cpu", False, "fp32"), ("onnx", "cuda", True, "fp32"),
    ("torch", "cpu", True, "fp32"), ("torch", "cuda:1", True, "fp16"), ("tensorrt", "cuda", True, "fp16"),
])
def test_auto_precision_per_backend_device_and_cpu(monkeypatch, backend, device, fast_int8, precision):
    import models.runtime as rt

    monkeypatch.setattr(rt, "cpu_has_fast_int8", lambda: fast_int8)
    assert rt.resolve_precision(rt.DEFAULT_ARTIFACT, backend, "auto", device) == precision
    assert rt.resolve_precision(rt.DEFAULT_ARTIFACT, "onnx", "int8", "cpu") == "int8"  # asked for: given


@pytest.mark.parametrize("cpuinfo, fast", [
    ("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n", False),  # AMD Zen 2: AVX2 only
    ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n", True),  # Ice Lake, Zen 4
    ("processor\t: 0\nflags\t\t: fpu avx2 avx_vnni\n", True),  # Alder Lake
    ("processor\t: 0\nFeatures\t: fp asimd crc32 asimddp\n", True),  # Arm with dot product
    (None, True),  # not Linux: int8, as before
])
def test_int8_is_chosen_by_the_cpus_int8_dot_product_instructions(tmp_path, cpuinfo, fast):
    from models.runtime import cpu_has_fast_int8

    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert cpu_has_fast_int8(str(path)) is fast


def test_auto_precision_without_an_int8_graph_is_fp32(tmp_path):
    from models.runtime import resolve_precision

    assert resolve_precision(tmp_path, "onnx", "auto", "cpu") == "fp32"


@pytest.mark.parametrize("backend", ["torch", "tensorrt"])
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, backend):
    import torch

    from models.runtime import DEFAULT_ARTIFACT, BackendUnavailable, make_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="torch.cuda.is_available"):
        make_backend(DEFAULT_ARTIFACT, backend, "auto", "cuda")


def test_a_gpu_index_that_is_not_there_is_refused(monkeypatch):
    import torch

    from models.runtime import DEFAULT_ARTIFACT, BackendUnavailable, make_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BackendUnavailable, match="only 1 GPU"):
        make_backend(DEFAULT_ARTIFACT, "torch", "fp16", "cuda:3")


def test_onnx_on_cuda_without_the_cuda_provider_does_not_fall_back_silently(monkeypatch):
    import onnxruntime

    from models.runtime import DEFAULT_ARTIFACT, BackendUnavailable, make_backend

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="no CUDA provider"):
        make_backend(DEFAULT_ARTIFACT, "onnx", "auto", "cuda")


def test_tensorrt_without_the_package_is_a_clear_error(monkeypatch):
    import torch

    from models.runtime import DEFAULT_ARTIFACT, BackendUnavailable, make_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails, as on a machine without it
    with pytest.raises(BackendUnavailable, match="TensorRT Python package"):
        make_backend(DEFAULT_ARTIFACT, "tensorrt", "auto", "cuda")


def test_from_artifact_validates_too():
    from models.runtime import DEFAULT_ARTIFACT, BackendUnavailable

    with pytest.raises(BackendUnavailable, match="not fp16"):
        Scorer.from_artifact(DEFAULT_ARTIFACT, backend="onnx", precision="fp16")


# --- Scorer.check: the start-up self-test ---

class FakeBackend:
    """Returns fixed logits: `fill` everywhere, `rows`/`topics` to get the shape wrong."""

    name = "fake"

    def __init__(self, fill=0.0, topics=20, rows=None, error=None):
        self.fill, self.topics, self.rows, self.error = fill, topics, rows, error

    def infer(self, input_ids, attention_mask):
        if self.error:
            raise self.error
        n = self.rows or len(input_ids)
        return np.full((n, self.topics), self.fill, np.float32), np.full((n, 3), self.fill, np.float32)


@pytest.fixture(scope="module")
def committed():
    from models.runtime import DEFAULT_ARTIFACT, Meta, Tokenizer

    meta = Meta.load(DEFAULT_ARTIFACT)
    return Tokenizer(DEFAULT_ARTIFACT, meta.max_length), meta


def test_check_passes_on_the_real_model(artifact):
    s = Scorer.from_artifact(artifact)
    assert s.check() is s


@pytest.mark.parametrize("backend, message", [
    (FakeBackend(fill=np.nan), "non-finite"),
    (FakeBackend(fill=np.inf), "non-finite"),
    (FakeBackend(topics=19), "returned shapes"),
    (FakeBackend(rows=1), "returned shapes"),  # would broadcast over the chunk unchecked
    (FakeBackend(error=ValueError("bad input")), "bad input"),
])
def test_check_raises_on_a_broken_backend(committed, backend, message):
    tokenizer, meta = committed
    with pytest.raises(RuntimeError, match=f"model check failed.*{message}"):
        Scorer(backend, tokenizer, meta).check()


def test_check_accepts_a_well_formed_fake(committed):
    tokenizer, meta = committed
    Scorer(FakeBackend(), tokenizer, meta, max_batch=1).check()  # uniform but valid distributions


# --- chunks run at once (Scorer.workers: the worker's default, stream.app.scorer_threads) ---

def test_parallel_chunks_give_the_serial_answers_in_input_order(artifact, real_texts):
    """Same chunks, same graph calls: the logits, the token states kept for the entity head and
    the recheck counters are those of one chunk after another."""
    texts = real_texts[:300]
    serial = Scorer.from_artifact(artifact, max_batch=16, threads=1, precision="int8")
    parallel = Scorer.from_artifact(artifact, max_batch=16, threads=1, workers=2, precision="int8")
    want, got = serial.logits(texts), parallel.logits(texts)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]
    assert parallel.backend.rows == serial.backend.rows == len(texts)
    assert parallel.backend.rechecked == serial.backend.rechecked > 0
    for t in texts[::37]:
        np.testing.assert_array_equal(parallel.states.get(t)[0], serial.states.get(t)[0])


class MeetingBackend(FakeBackend):
    """Every call waits until `parties` calls are inside at once (a barrier with a timeout), so a
    scorer that runs its chunks one after another fails here; `bad_width` raises in that chunk."""

    def __init__(self, parties=2, bad_width=None, error=None, timeout=10.0):
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=timeout)
        self.bad_width, self.error_to_raise = bad_width, error

    def infer(self, input_ids, attention_mask):
        self.barrier.wait()
        if input_ids.shape[1] == self.bad_width:
            raise self.error_to_raise
        return super().infer(input_ids, attention_mask)


def test_workers_run_chunks_at_once_and_keep_input_order(committed):
    tokenizer, meta = committed
    texts = ["Fed holds", "Oil slides 4% as OPEC+ output talks stall and energy shares fall everywhere"] * 8
    scorer = Scorer(MeetingBackend(parties=2), tokenizer, meta, max_batch=8, workers=2)
    assert len(scorer.predict(texts)) == len(texts)  # two chunks (short, long), inside at the same time
    one = Scorer(MeetingBackend(parties=2, timeout=0.5), tokenizer, meta, max_batch=8, workers=1)
    with pytest.raises(threading.BrokenBarrierError):
        one.predict(texts)  # one chunk at a time never meets the barrier


class Panic(BaseException):
    """Like pyo3's PanicException: not an Exception."""


def test_a_failing_chunk_is_raised_from_a_parallel_call(committed):
    """The worker isolates model errors by bisection and stops on a panic: an error in a chunk
    run on the scorer's pool must reach the caller as itself, never a partial answer."""
    tokenizer, meta = committed
    texts = ["Fed holds", "Oil slides 4% as OPEC+ output talks stall and energy shares fall everywhere"] * 8
    long_width = max(len(x) for x in tokenizer.encode(texts)[0])
    for error in (ValueError("bad chunk"), Panic("tokenizer panic")):
        scorer = Scorer(MeetingBackend(parties=2, bad_width=long_width, error=error), tokenizer, meta,
                        max_batch=8, workers=2)
        with pytest.raises(type(error), match=str(error)):
            scorer.predict(texts)


def test_a_web_address_reads_as_its_scheme_word_and_offsets_stay_true():
    from models.artifact import encoder_text

    t = "Acme beats https://t.co/fkjejypxb9 and HTTP://example.com/a?b=1). Shares up, xhttps://no"
    m = encoder_text(t)
    assert len(m) == len(t) and m.index("Shares") == t.index("Shares")
    assert m.split() == ["Acme", "beats", "https", "and", "HTTP", "Shares", "up,", "xhttps://no"]
    assert encoder_text("no address here") == "no address here"


def test_the_tokenizer_masks_web_addresses_unless_the_artifact_says_not(tmp_path):
    import json
    import shutil

    from models.runtime import DEFAULT_ARTIFACT, Meta, Tokenizer

    t = "Hercules Electric Marine signs supply deal https://t.co/fkjejypxb9 https://t.co/dfyupsotme"
    meta = Meta.load(DEFAULT_ARTIFACT)
    masked, raw = (Tokenizer(DEFAULT_ARTIFACT, meta.max_length, m) for m in (True, False))
    assert meta.mask_urls and len(raw.encode([t])[0][0]) - len(masked.encode([t])[0][0]) > 20  # 26 word pieces
    assert masked.encode([t])[0] == raw.encode([t.replace("://t.co/fkjejypxb9", "").replace("://t.co/dfyupsotme", "")])[0]
    # an artifact trained on web addresses as they are keeps them (finsent.json "mask_urls": false)
    shutil.copytree(DEFAULT_ARTIFACT, tmp_path / "a", ignore=shutil.ignore_patterns("*.onnx", "*.safetensors"))
    raw_meta = json.loads((tmp_path / "a" / "finsent.json").read_text())
    (tmp_path / "a" / "finsent.json").write_text(json.dumps({**raw_meta, "mask_urls": False}))
    assert Meta.load(tmp_path / "a").mask_urls is False
