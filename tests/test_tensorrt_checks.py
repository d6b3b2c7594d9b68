"""The TensorRT backend's failure paths, on the CPU. TensorRT cannot be installed here, so a fake
`tensorrt` module (put in sys.modules) hands the backend fake engine/context objects that, like
the real ones, read inputs from and write outputs to the raw addresses they are given. Each test
makes one call fail; the backend must raise, never return what was left in its output buffers.
The real engine is checked against ONNX by tests/test_gpu.py where a GPU and TensorRT exist."""

from __future__ import annotations

import contextlib
import ctypes
import sys
import types

import numpy as np
import pytest

from models.tensorrt import INPUTS, OUTPUTS, TensorRTBackend

WIDTHS = {"topic_logits": 20, "sentiment_logits": 3}


def expected_logits(ids: np.ndarray, mask: np.ndarray, name: str) -> np.ndarray:
    """What the fake engine computes: depends on every input value, so a bad copy shows."""
    rows = (ids * mask).sum(1, keepdims=True) % 97
    return (rows + np.arange(WIDTHS[name]) * 0.5).astype(np.float32)


def at(address: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A numpy view of raw memory, as the engine sees a tensor address."""
    dtype = np.dtype(dtype)
    raw = (ctypes.c_byte * (int(np.prod(shape)) * dtype.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return self.engine.fail != "set_input_shape"

    def get_tensor_shape(self, name):
        batch = self.shapes["input_ids"][0] + (self.engine.fail == "output_shape")
        return (batch, WIDTHS[name])

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return self.engine.fail != "set_tensor_address" or name != "attention_mask"

    def execute_async_v3(self, stream_handle):
        if self.engine.fail == "execute":
            return False
        if self.engine.fail != "unwritten":  # "unwritten": reports success, writes nothing
            ids, mask = (at(self.addresses[n], self.shapes[n], self.engine.dtypes[n]) for n in INPUTS)
            for n in OUTPUTS:
                at(self.addresses[n], (len(ids), WIDTHS[n]), self.engine.dtypes[n])[:] = expected_logits(ids, mask, n)
        return True


class FakeEngine:
    def __init__(self, input_dtype="int64", fail=None, names=INPUTS + OUTPUTS, output_dtype="float32"):
        self.fail, self.names = fail, names
        self.dtypes = {n: input_dtype if n in INPUTS else output_dtype for n in names}
        self.num_io_tensors = len(names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def get_tensor_shape(self, name):
        return (-1, WIDTHS[name]) if name in WIDTHS else (-1, -1)

    def create_execution_context(self):
        return None if self.fail == "context" else FakeContext(self)


class HostIO:
    """CudaIO's interface on host memory: addresses are numpy buffers' own."""

    handle = 0

    def scope(self):
        return contextlib.nullcontext()

    def put(self, array):
        return np.array(array)

    def empty(self, shape, dtype):
        return np.full(shape, np.nan, dtype)

    def address(self, buf):
        return buf.ctypes.data

    def fetch(self, bufs):
        return [b.copy() for b in bufs]


@pytest.fixture
def trt(monkeypatch):
    m = types.ModuleType("tensorrt")
    m.__version__ = "10.fake"
    m.engine = FakeEngine()  # what the next deserialisation returns (None: it failed)
    m.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    m.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: m.engine)
    m.nptype = lambda dtype: np.dtype(dtype).type  # the fake's DataType is the numpy dtype's name
    monkeypatch.setitem(sys.modules, "tensorrt", m)
    return m


@pytest.fixture
def engine_file(tmp_path):
    path = tmp_path / "fake.engine"
    path.write_bytes(b"not a real engine")
    return path


def backend(trt, engine_file, **engine) -> TensorRTBackend:
    trt.engine = FakeEngine(**engine)
    return TensorRTBackend(engine_file, io=HostIO())


def inputs(batch=3, seq=7):
    ids = np.arange(batch * seq, dtype=np.int64).reshape(batch, seq) + 100
    mask = np.ones_like(ids)
    mask[0, 4:] = 0
    return ids, mask


@pytest.mark.parametrize("input_dtype", ["int64", "int32"])
def test_a_good_run_returns_the_engines_outputs(trt, engine_file, input_dtype):
    ids, mask = inputs()
    topic, sentiment = backend(trt, engine_file, input_dtype=input_dtype).infer(ids, mask)
    # the int32 engine reads 4-byte values: right only if the backend converted the int64 arrays
    np.testing.assert_array_equal(topic, expected_logits(ids, mask, "topic_logits"))
    np.testing.assert_array_equal(sentiment, expected_logits(ids, mask, "sentiment_logits"))
    assert topic.dtype == sentiment.dtype == np.float32


def test_fp16_outputs_come_back_as_float32(trt, engine_file):
    topic, _ = backend(trt, engine_file, output_dtype="float16").infer(*inputs())
    assert topic.dtype == np.float32 and topic.shape == (3, 20)


@pytest.mark.parametrize("fail, message", [
    ("set_input_shape", "set_input_shape"),
    ("set_tensor_address", "set_tensor_address"),
    ("execute", "execute_async_v3"),
    ("unwritten", "non-finite"),
    ("output_shape", "would have shape"),
])
def test_a_failed_call_raises_instead_of_returning_garbage(trt, engine_file, fail, message):
    b = backend(trt, engine_file, fail=fail)
    with pytest.raises(RuntimeError, match=message):
        b.infer(*inputs())


def test_failed_deserialisation_raises(trt, engine_file):
    trt.engine = None
    with pytest.raises(RuntimeError, match="could not deserialise"):
        TensorRTBackend(engine_file, io=HostIO())


def test_failed_context_creation_raises(trt, engine_file):
    with pytest.raises(RuntimeError, match="execution context"):
        backend(trt, engine_file, fail="context")


@pytest.mark.parametrize("engine, message", [
    ({"names": ("input_ids", "topic_logits", "sentiment_logits")}, "engine tensors"),
    ({"input_dtype": "float32"}, "expected int32 or int64"),
    ({"output_dtype": "int32"}, "expected a float type"),
])
def test_an_engine_with_unexpected_io_is_refused_at_load(trt, engine_file, engine, message):
    with pytest.raises(RuntimeError, match=message):
        backend(trt, engine_file, **engine)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool])
def test_non_integer_inputs_are_refused(trt, engine_file, dtype):
    ids, mask = inputs()
    with pytest.raises(TypeError, match="integer"):
        backend(trt, engine_file).infer(ids.astype(dtype), mask)
    with pytest.raises(TypeError, match="integer"):
        backend(trt, engine_file).infer(ids, mask.astype(dtype))


def test_ids_that_do_not_fit_an_int32_engine_are_refused(trt, engine_file):
    ids, mask = inputs()
    ids[0, 0] = 2**40
    with pytest.raises(ValueError, match="outside int32"):
        backend(trt, engine_file, input_dtype="int32").infer(ids, mask)


@pytest.mark.parametrize("ids, mask", [
    (np.ones((2, 5), np.int64), np.ones((2, 6), np.int64)),
    (np.ones(5, np.int64), np.ones(5, np.int64)),
    (np.ones((0, 5), np.int64), np.ones((0, 5), np.int64)),
])
def test_malformed_input_shapes_are_refused(trt, engine_file, ids, mask):
    with pytest.raises(ValueError, match="shape"):
        backend(trt, engine_file).infer(ids, mask)


def test_make_backend_passes_the_device_to_tensorrt(trt, monkeypatch, tmp_path):
    import torch

    from models.runtime import make_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    seen = {}
    record = classmethod(lambda cls, directory, device: seen.update(device=device))
    monkeypatch.setattr(TensorRTBackend, "from_artifact", record)
    make_backend(tmp_path, "tensorrt", "auto", "cuda:1")
    assert seen == {"device": "cuda:1"}
