"""TensorRT backend: an FP16 engine built from the same ONNX graph, run on a CUDA device.

Engines are build outputs, named by model version, GPU, precision and TensorRT version, and
never committed. TensorRT is not installable on the machines this project was built on, so
this module is exercised only where `import tensorrt` works and a GPU is present (see the
README); the code follows the TensorRT 10 Python API (named I/O tensors, execute_async_v3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.runtime import Meta

# Optimisation profile sized to the real feed: tweets ~20-40 tokens, headlines ~15-30,
# articles truncated at max_length; batches up to the worker's max_batch.
PROFILE_BATCH = (1, 64, 256)
PROFILE_SEQ = (4, 48, 128)


def engine_path(directory: Path, meta: Meta) -> Path:
    import tensorrt as trt
    import torch

    gpu = torch.cuda.get_device_name().replace(" ", "-")
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


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_file: Path):
        import tensorrt as trt
        import torch

        self.torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_file).read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    @classmethod
    def from_artifact(cls, directory: Path) -> TensorRTBackend:
        path = engine_path(directory, Meta.load(directory))
        if not path.exists():
            raise FileNotFoundError(f"{path} not built; run `finsent export --tensorrt` on this GPU")
        return cls(path)

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray):
        torch = self.torch
        tensors = {"input_ids": torch.from_numpy(input_ids).cuda(), "attention_mask": torch.from_numpy(attention_mask).cuda()}
        batch = input_ids.shape[0]
        for name, t in tensors.items():
            self.context.set_input_shape(name, tuple(t.shape))
        for name in ("topic_logits", "sentiment_logits"):
            shape = (batch, self.engine.get_tensor_shape(name)[1])
            tensors[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
        for name, t in tensors.items():
            self.context.set_tensor_address(name, t.data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return tensors["topic_logits"].cpu().numpy(), tensors["sentiment_logits"].cpu().numpy()
