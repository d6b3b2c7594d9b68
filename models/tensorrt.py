"""TensorRT backend: an FP16 engine built from the same ONNX graph, run on a CUDA device.

Engines are build outputs, named by model version, GPU, precision and TensorRT version, and
never committed. TensorRT is not installable on the machines this project was built on, so
this module is exercised only where `import tensorrt` works and a GPU is present (see the
README); the code follows the TensorRT 10 Python API (named I/O tensors, execute_async_v3).

Room: serving (loads a built artifact and scores; torch only for the reference backend). See models/README.md.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np

from models.artifact import Meta

# Optimisation profile sized to the real feed: tweets ~20-40 tokens, headlines ~15-30,
# articles truncated at max_length; batches up to the worker's max_batch.
PROFILE_BATCH = (1, 64, 256)
PROFILE_SEQ = (4, 48, 128)
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("topic_logits", "sentiment_logits")


def engine_path(directory: Path, meta: Meta, device: str = "cuda") -> Path:
    import tensorrt as trt
    import torch

    gpu = torch.cuda.get_device_name(device).replace(" ", "-")
    return Path(directory) / f"{meta.version}.{gpu}.fp16.trt{trt.__version__}.engine"


def build_engine(onnx_file: Path, directory: Path, fp16: bool = True) -> Path:
    import tensorrt as trt

    meta = Meta.load(directory)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_file).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_file}: {errs}")
    for i in reversed(range(network.num_outputs)):  # model.onnx also outputs last_hidden_state (the
        t = network.get_output(i)                     # entity head's input): the engine serves the logits only
        if t.name not in OUTPUTS:
            network.unmark_output(t)
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    seq_max = min(PROFILE_SEQ[2], meta.max_length)
    for name in ("input_ids", "attention_mask"):
        profile.set_shape(name, (PROFILE_BATCH[0], PROFILE_SEQ[0]), (PROFILE_BATCH[1], PROFILE_SEQ[1]),
                          (PROFILE_BATCH[2], seq_max))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    path = engine_path(directory, meta)
    path.write_bytes(bytes(serialized))
    return path


class CudaIO:
    """Device buffers and ONE CUDA stream: copies in, the engine run and copies out are all
    queued on it, so their order never depends on another stream."""

    def __init__(self, device: str = "cuda"):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        self.handle = self.stream.cuda_stream

    def scope(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(self.torch.cuda.device(self.device))
        stack.enter_context(self.torch.cuda.stream(self.stream))
        return stack

    def put(self, array: np.ndarray):
        return self.torch.from_numpy(array).to(self.device)  # queued on the current (our) stream

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        # NaN-filled: an output the engine never wrote is caught by the finiteness check
        torch_dtype = self.torch.from_numpy(np.empty(0, dtype)).dtype
        return self.torch.full(shape, float("nan"), dtype=torch_dtype, device=self.device)

    def address(self, buf) -> int:
        return buf.data_ptr()

    def fetch(self, bufs: list) -> list[np.ndarray]:
        hosts = [self.torch.empty(b.shape, dtype=b.dtype, pin_memory=True) for b in bufs]
        for h, b in zip(hosts, bufs):
            h.copy_(b, non_blocking=True)
        self.stream.synchronize()  # the copies (and the run before them) are done: safe to read
        return [h.numpy() for h in hosts]


def _ok(value, message: str):
    """TensorRT reports most failures as None / False (details go to its logger), not exceptions."""
    if value is None or value is False:
        raise RuntimeError(f"TensorRT: {message}")
    return value


def _io_spec(trt, engine) -> tuple[dict[str, np.dtype], dict[str, int]]:
    """Dtype of every I/O tensor and the class count of each output, checked once at load."""
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    _ok(names == set(INPUTS + OUTPUTS), f"engine tensors {sorted(names)}, expected {sorted(INPUTS + OUTPUTS)}")
    dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
    for n in INPUTS:
        _ok(dtypes[n] in (np.int32, np.int64), f"engine input {n} is {dtypes[n]}, expected int32 or int64")
    for n in OUTPUTS:
        _ok(dtypes[n].kind == "f", f"engine output {n} is {dtypes[n]}, expected a float type")
    widths = {n: int(engine.get_tensor_shape(n)[-1]) for n in OUTPUTS}
    _ok(all(w > 0 for w in widths.values()), f"engine outputs need a static class axis, got {widths}")
    return dtypes, widths


def _cast(name: str, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Explicit conversion to what the engine declares; refuse floats/bools and values that do not fit."""
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got {a.dtype}")
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise ValueError(f"{name} has values outside {dtype}, the engine's input type")
    return np.ascontiguousarray(a, dtype=dtype)


class TensorRTBackend:
    """Every TensorRT call is checked; a failed run raises instead of returning stale memory."""

    name = "tensorrt"

    def __init__(self, engine_file: Path, device: str = "cuda", io=None):
        import tensorrt as trt

        self.io = io or CudaIO(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)  # kept: the runtime must outlive its engine
        with self.io.scope():  # the engine belongs to the device it is deserialised on
            self.engine = _ok(self.runtime.deserialize_cuda_engine(Path(engine_file).read_bytes()),
                              f"could not deserialise {engine_file} (built for another GPU or TensorRT version?)")
            self.context = _ok(self.engine.create_execution_context(),
                               "could not create an execution context (out of GPU memory?)")
        self.dtypes, self.widths = _io_spec(trt, self.engine)
        self.lock = threading.Lock()  # one execution context: one run at a time

    @classmethod
    def from_artifact(cls, directory: Path, device: str = "cuda") -> TensorRTBackend:
        path = engine_path(directory, Meta.load(directory), device)
        if not path.exists():
            raise FileNotFoundError(f"{path} not built; run `finsent export --tensorrt` on this GPU")
        return cls(path, device)

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray):
        arrays = self._inputs(input_ids, attention_mask)
        batch = len(input_ids)
        with self.lock, self.io.scope():
            bufs = {n: self.io.put(a) for n, a in arrays.items()}
            for n, a in arrays.items():
                _ok(self.context.set_input_shape(n, a.shape),
                    f"set_input_shape({n}, {a.shape}) failed (outside the optimisation profile?)")
            for n in OUTPUTS:
                bufs[n] = self.io.empty(self._output_shape(n, batch), self.dtypes[n])
            for n, b in bufs.items():
                _ok(self.context.set_tensor_address(n, self.io.address(b)), f"set_tensor_address({n}) failed")
            _ok(self.context.execute_async_v3(self.io.handle), "execute_async_v3 failed")
            outs = self.io.fetch([bufs[n] for n in OUTPUTS])
        return tuple(self._checked(n, o, batch) for n, o in zip(OUTPUTS, outs))

    def _inputs(self, input_ids, attention_mask) -> dict[str, np.ndarray]:
        arrays = dict(zip(INPUTS, (np.asarray(input_ids), np.asarray(attention_mask))))
        shape = arrays["input_ids"].shape
        for n, a in arrays.items():
            if a.ndim != 2 or a.shape != shape or 0 in shape:
                raise ValueError(f"{n} has shape {a.shape}; both inputs must be the same non-empty (batch, seq)")
        return {n: _cast(n, a, self.dtypes[n]) for n, a in arrays.items()}

    def _output_shape(self, name: str, batch: int) -> tuple[int, int]:
        shape = tuple(self.context.get_tensor_shape(name))
        want = (batch, self.widths[name])
        _ok(shape == want, f"{name} would have shape {shape}, expected {want}")
        return shape

    def _checked(self, name: str, out: np.ndarray, batch: int) -> np.ndarray:
        _ok(out.shape == (batch, self.widths[name]), f"{name} came back with shape {out.shape}")
        _ok(bool(np.isfinite(out).all()), f"{name} has non-finite values (run failed or output not written)")
        return out.astype(np.float32, copy=False)
