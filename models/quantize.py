"""int8 quantisation of the item graph (model.onnx → model.int8.onnx), and how to measure it.

    from models.quantize import quantize_item_graph
    quantize_item_graph(directory / "model.onnx", directory / "model.int8.onnx", calibration_texts,
                        Tokenizer(directory, meta.max_length, meta.mask_urls))

The default recipe (SHIPPED) is the one bench/quantize.py found fastest as shipped, i.e. with the
fp32 recheck of near-ties included (table and commands: docs/quantize.md): ONNX Runtime dynamic
quantisation, int8 per-channel weights, every Attention / MatMul / Gemm / EmbedLayerNormalization.
Recipes that flip fewer argmaxes exist (fp32 kept for the FFN output projections of layers 0-2, or
for whole early layers: 6.5 % / 4.3 % / 2.1 % of items rechecked instead of 15 % at 99.7 %
agreement), but the fp32 they keep runs on every item and cost as much as or more than the
recheck they save. Static QDQ (MinMax / Percentile / Entropy) and SmoothQuant-style smoothing
(`smooth`) flip more. `calibration_texts` feed the static and smoothed recipes only.

Also here, for bench/quantize.py, tests and `finsent export --calibrate`: `calibration_batches`
(texts → feeds of varied batch size and length, padded per length bucket as the runtime pads), a
`CalibrationDataReader` over them, `agreement` / `margin_for` (argmax agreement with fp32, and
the near-tie recheck margin a graph needs to reach a target agreement, with the share it rechecks).

Room: training (export side). Uses models.runtime's tokenizer, padding and margin; no torch.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from models.runtime import length_buckets, pad_chunk, top2_margin

# op types quantised: every one with an int8 kernel in this graph (the shipped recipe), or the
# encoder's only; with ENCODER_OPS the quantiser still rewrites the heads' Gemm as MatMul and
# quantises it: exclude "_head/" to keep the heads fp32 (Recipe.exclude)
ALL_OPS = ("Attention", "MatMul", "Gemm", "EmbedLayerNormalization")
ENCODER_OPS = ("Attention", "MatMul")
STATIC_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class Recipe:
    """One way to quantise: dynamic (activations quantised per call) or static QDQ (ranges from
    calibration text); which op types; which nodes stay fp32."""

    method: str = "dynamic"  # dynamic | minmax | percentile | entropy | smooth (smooth, then dynamic)
    per_channel: bool = True
    op_types: tuple[str, ...] = ALL_OPS
    exclude: tuple[str, ...] = ()  # node names, or substrings of node names ("layer.0/", "output/dense")
    alpha: float = 0.5  # method "smooth": SmoothQuant's migration strength


SHIPPED = Recipe()  # the same graph as models/export.py quantize_int8 (issue 21 found none faster as shipped)


def calibration_batches(texts: Sequence[str], tokenizer, max_batch: int = 16) -> list[dict[str, np.ndarray]]:
    """Feeds for calibration: the texts tokenised, sorted by length and padded per bucket exactly
    as Scorer pads them, so the calibration sees every sequence length the texts have (and the
    batch sizes the runtime makes), never one fixed shape."""
    ids, _ = tokenizer.encode(list(texts))
    feeds = []
    for chunk in length_buckets([len(x) for x in ids], max_batch):
        input_ids, mask = pad_chunk([ids[i] for i in chunk], tokenizer.pad_id)
        feeds.append({"input_ids": input_ids, "attention_mask": mask})
    return feeds


def data_reader(feeds: list[dict[str, np.ndarray]]):
    """An onnxruntime CalibrationDataReader over `feeds`; `set_range` lets the calibrator take one
    feed at a time (its histogram collectors cannot stack feeds of different shapes)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.start, self.end, self.pos = 0, len(feeds), 0

        def __len__(self):
            return len(feeds)

        def set_range(self, start_index: int, end_index: int):
            self.start, self.end, self.pos = start_index, min(end_index, len(feeds)), start_index

        def get_next(self):
            if self.pos >= self.end:
                return None
            self.pos += 1
            return feeds[self.pos - 1]

    return Reader()


def excluded(src: Path, recipe: Recipe) -> list[str]:
    """The graph's node names that `recipe.exclude` names (exactly or as a substring)."""
    if not recipe.exclude:
        return []
    import onnx

    nodes = onnx.load(str(src), load_external_data=False).graph.node
    hit = [n for n in nodes if any(p == n.name or p in n.name for p in recipe.exclude)]
    # the quantiser turns a Gemm into MatMul + Add named `<gemm>_MatMul` before it reads the exclusions
    return [n.name for n in hit] + [f"{n.name}_MatMul" for n in hit if n.op_type == "Gemm"]


def quantize_dynamic_graph(src: Path, dst: Path, recipe: Recipe = SHIPPED) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference; their
    # outputs are float, which is what DefaultTensorType tells the quantiser.
    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=recipe.per_channel,
                         op_types_to_quantize=list(recipe.op_types), nodes_to_exclude=excluded(src, recipe),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return Path(dst)


def quantize_static_graph(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], recipe: Recipe,
                          cache: Path | None = None) -> Path:
    """QDQ static quantisation: activation ranges from `feeds` (calibration_batches), uint8
    activations, int8 weights (per channel if asked). `cache` keeps the calibrated ranges, so
    variants that differ only in excluded nodes calibrate once. The fused Attention op has no QDQ
    form: it stays fp32 in this recipe (its input/output projections are quantised around it)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[recipe.method]
    with _quiet(), _tmpdir() as tmp:
        typed = with_shapes(src, Path(tmp) / "typed.onnx")
        quantize_static(str(typed), str(dst), data_reader(feeds), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=recipe.per_channel,
                        calibrate_method=method, op_types_to_quantize=list(recipe.op_types),
                        nodes_to_exclude=excluded(src, recipe), calibration_cache_path=cache,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "CalibStridedMinMax": 1,
                                       "CalibPercentile": 99.999})
    if not any(op == "QuantizeLinear" for op in op_types(dst)):
        raise RuntimeError(f"static quantisation of {src} quantised no activation (weights only): "
                           "the calibrator found no typed tensor to calibrate")
    return Path(dst)


def op_types(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


def with_shapes(src: Path, dst: Path) -> Path:
    """`src` with every tensor's type and shape inferred. ONNX's own inference stops at the fused
    contrib ops, and the static calibrator only calibrates tensors whose type it knows: without
    this it calibrates nothing and quantize_static quietly writes a weight-only graph.
    ORT's symbolic shape inference knows the contrib ops."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(src)), auto_merge=True), str(dst))
    return dst


def quantize_item_graph(fp32_path: Path, out_path: Path, calibration_texts: Sequence[str] = (), tokenizer=None,
                        recipe: Recipe = SHIPPED, max_batch: int = 16) -> Path:
    """The int8 item graph of `fp32_path` (the fused fp32 model.onnx) written to `out_path`.
    The default recipe is dynamic and needs no calibration text; a static or smoothed recipe calibrates on
    `calibration_texts` (real text, neither the texts the margin is chosen on nor dev text),
    tokenised with `tokenizer` (models.runtime.Tokenizer)."""
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if recipe.method == "dynamic":
        return quantize_dynamic_graph(fp32_path, out_path, recipe)
    if recipe.method == "smooth":
        if tokenizer is None or not len(calibration_texts):
            raise ValueError("smoothing needs calibration_texts and a tokenizer")
        with _tmpdir() as tmp:
            smoothed = smooth(fp32_path, Path(tmp) / "smoothed.onnx", calibration_batches(calibration_texts, tokenizer,
                                                                                         max_batch), recipe.alpha)
            return quantize_dynamic_graph(smoothed, out_path, recipe)
    if recipe.method not in STATIC_METHODS:
        raise ValueError(f"unknown quantisation method {recipe.method!r}; use dynamic or one of {STATIC_METHODS}")
    if tokenizer is None or not len(calibration_texts):
        raise ValueError(f"static quantisation ({recipe.method}) needs calibration_texts and a tokenizer")
    return quantize_static_graph(fp32_path, out_path, calibration_batches(calibration_texts, tokenizer, max_batch),
                                 recipe)


def int8_weight_count(path: Path) -> int:
    """How many int8/uint8 initialisers (quantised weights) the graph holds."""
    import onnx

    m = onnx.load(str(path))
    return sum(1 for t in m.graph.initializer if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
               and len(t.dims) >= 2)


# -- agreement with fp32 and the recheck margin it needs --------------------------------------------


def near_tie(topic_logits: np.ndarray, sentiment_logits: np.ndarray) -> np.ndarray:
    """The runtime's recheck score per row: the smaller top-2 probability margin of the two heads
    (models.runtime.RecheckedBackend rescores a row when this is under its margin)."""
    return np.minimum(top2_margin(topic_logits), top2_margin(sentiment_logits))


def agreement(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray],
              margin: float = 0.0) -> tuple[float, float, float]:
    """(topic, sentiment) argmax agreement of `got` with `ref` after rescoring rows whose near-tie
    score is under `margin` with `ref`, and the share of rows rescored."""
    redo = near_tie(*got) < margin
    heads = [float((np.where(redo, r.argmax(1), g.argmax(1)) == r.argmax(1)).mean()) for r, g in zip(ref, got)]
    return heads[0], heads[1], float(redo.mean())


def margin_for(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], target: float,
               step: float = 0.005) -> tuple[float, float]:
    """The smallest margin (a multiple of `step`) at which both heads agree with `ref` on at least
    `target` of the rows after recheck, and the share of rows it rescores."""
    for m in np.arange(0.0, 1.0 + step, step):
        t, s, fired = agreement(ref, got, float(m))
        if min(t, s) >= target:
            return round(float(m), 6), fired
    return 1.0, 1.0


class _quiet:
    """onnxruntime.quantization logs advice to pre-process on the root logger for every graph with
    fused contrib ops (shape inference cannot see through them; DefaultTensorType answers it)."""

    def __enter__(self):
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.getLogger().setLevel(self.level)


def _tmpdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="finsent-quant-")


# -- smoothing (SmoothQuant, Xiao et al. 2023): activation outliers moved into the weights ---------


def smooth(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], alpha: float = 0.5,
           op_types: tuple[str, ...] = ALL_OPS) -> Path:
    """An fp32 graph equal to `src` (up to float rounding) whose matrix products see smoother
    inputs: before each Attention / MatMul with a constant weight W, x → x / s (a Mul node) and
    W → diag(s) W, with s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) from the calibration feeds. A few
    input channels of a BERT layer carry values 10-100x the rest, and one per-tensor int8 scale
    (dynamic quantisation) then leaves the others a handful of levels; after smoothing they share
    the range more evenly, and the weights (quantised per channel) absorb the difference."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    targets = [n for n in model.graph.node if n.op_type in op_types and len(n.input) > 1 and n.input[1] in inits
               and len(inits[n.input[1]].dims) == 2]
    amax = _input_absmax(model, [n.input[0] for n in targets], feeds)
    for n in targets:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        s = np.clip(amax[n.input[0]], 1e-5, None) ** alpha / np.clip(np.abs(w).max(1), 1e-5, None) ** (1 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        inits[n.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), n.input[1]))
        name = f"{n.name}_smooth"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{name}_inv_scale"))
        model.graph.node.append(helper.make_node("Mul", [n.input[0], f"{name}_inv_scale"], [f"{name}_out"], name))
        n.input[0] = f"{name}_out"
    _topological_sort(model)
    onnx.save(model, str(dst))
    return Path(dst)


def _input_absmax(model, names: list[str], feeds) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |x| of the named tensors over the feeds (padding positions excluded)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    wanted = list(dict.fromkeys(names))
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.helper.make_empty_tensor_value_info(x) for x in wanted if x not in have])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    out: dict[str, np.ndarray] = {}
    for feed in feeds:
        real = feed["attention_mask"].astype(bool)
        for x, v in zip(wanted, sess.run(wanted, feed)):
            a = np.abs(v[real] if v.ndim == 3 else v).max(0)
            out[x] = np.maximum(out[x], a) if x in out else a
    return out


def _topological_sort(model) -> None:
    """Reorder graph nodes so every input is produced before use (new Mul nodes were appended)."""
    produced = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    pending, order = list(model.graph.node), []
    while pending:
        ready = [n for n in pending if all(x in produced for x in n.input)]
        if not ready:
            raise RuntimeError("graph has a cycle or an input nothing produces")
        for n in ready:
            order.append(n)
            produced.update(n.output)
        pending = [n for n in pending if n not in ready]
    del model.graph.node[:]
    model.graph.node.extend(order)
