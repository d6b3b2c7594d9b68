"""Export a trained artifact: `finsent export --model DIR [--int8] [--tensorrt]`.

One ONNX graph carries both heads (outputs `topic_logits`, `sentiment_logits`) and the encoder's
last hidden states (`last_hidden_state`, which the per-entity head reads: models.runtime
Scorer.entity_sentiment), with dynamic batch and sequence axes. Then ONNX Runtime's transformer optimiser fuses attention / layer-norm
/ GELU (`model.onnx`), optional int8 dynamic quantisation writes `model.int8.onnx`, and
`validate` checks each graph against PyTorch on real texts within named tolerances.

Room: training (builds, checks and exports artifacts). See models/README.md.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.artifact import read_meta_file, write_meta_file
from models.entity_inputs import HIDDEN_OUTPUT, STALE_FILES

FP32_ATOL = 1e-3  # max |p_onnx - p_torch| over all probabilities
# Share of argmax agreement per head of the int8 graph alone (on the synthetic feed: v1 topic 97.5 %,
# v2 topic 97.0 %, sentiment 98.7-99.9 %; errors are spread over every layer, so no set of fp32 layers or
# SmoothQuant fixed it), and of the shipped int8 path, which rescores near-ties with the fp32
# graph (models.runtime.RecheckedBackend; its margin is chosen per model by `export --calibrate`).
INT8_MIN_AGREEMENT = 0.96
INT8_RECHECKED_MIN_AGREEMENT = 0.99

SAMPLE_TEXTS = [
    "$AAPL beats on revenue, raises guidance for the holiday quarter",
    "Fed signals it will keep rates higher for longer as inflation stays sticky",
    "Oil slides 4% as OPEC+ output talks stall",
    "Company X announces CEO departure effective immediately; shares halted",
    "Treasury yields jump after strong payrolls report",
    "Gold hits record as dollar weakens",
    "$TSLA down 8% premarket after deliveries miss estimates",
    "Operating profit fell to EUR 1.2 mn from EUR 3.4 mn in the corresponding period .",
]


@contextmanager
def expected_export_warnings():
    """Hide the warnings an export of this model always prints and that `validate` answers (it
    checks every graph against PyTorch on texts of other lengths and batch sizes); any other
    warning still shows. Each filter names the module that warns and its message:
    - TracerWarning from transformers' attention-mask helpers: a shape test and a constant tensor
      are recorded as constants. The test (is the mask longer than the sequence?) is false for every
      input this graph gets, and the constant is the mask's fill value.
    - torch.onnx on `aten::index`: advanced indexing is exported as Gather and friends, wrong only
      for negative indices; the indices are the mask helpers' aranges (batch, key position), never negative.
    - onnxruntime.quantization's advice to run pre-processing (shape inference and graph
      optimisation): the graph it gets is already fused by ORT's transformer optimiser, and the
      fused ops' output types are given by DefaultTensorType (quantize_int8)."""
    advice = ("Please consider to run pre-processing before quantization",
              "Please consider pre-processing before quantization")

    class Advice(logging.Filter):  # onnxruntime logs it on the root logger
        def filter(self, record: logging.LogRecord) -> bool:
            return not (record.pathname.replace("\\", "/").endswith("onnxruntime/quantization/quantize.py")
                        and str(record.msg).startswith(advice))

    root, advice_filter = logging.getLogger(), Advice()
    with warnings.catch_warnings():
        try:
            from torch.jit import TracerWarning
        except ImportError:  # quantising without torch installed: no tracer
            pass
        else:
            warnings.filterwarnings("ignore", category=TracerWarning, module=r"transformers\.masking_utils")
        warnings.filterwarnings("ignore", message=r"Exporting aten::index operator of advanced indexing",
                                category=UserWarning, module=r"torch\.onnx\.")
        root.addFilter(advice_filter)
        try:
            yield
        finally:
            root.removeFilter(advice_filter)


def export_onnx(directory: Path, out: Path, opset: int = 17) -> Path:
    import torch

    from models.network import load_artifact, mean_pool

    model, _ = load_artifact(directory, attention="eager")

    class WithStates(torch.nn.Module):
        """MultiTaskModel.forward (eval: dropout is the identity) plus the states it pools."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            pooled = mean_pool(hidden, attention_mask)
            return model.topic_head(pooled), model.sentiment_head(pooled), hidden

    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with expected_export_warnings():
        torch.onnx.export(WithStates().eval(), (ids, mask), str(out), input_names=["input_ids", "attention_mask"],
                          output_names=["topic_logits", "sentiment_logits", HIDDEN_OUTPUT], opset_version=opset,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, HIDDEN_OUTPUT: axes,
                                        "topic_logits": {0: "batch"}, "sentiment_logits": {0: "batch"}},
                          dynamo=False)
    return out


def without_states(src: Path, dst: Path) -> Path:
    """A copy of an item graph with only the two logits outputs (the TensorRT engine's I/O,
    models.tensorrt.OUTPUTS); the states stay inside as the pooling's input."""
    import onnx

    m = onnx.load(str(src))
    keep = [o for o in m.graph.output if o.name != HIDDEN_OUTPUT]
    del m.graph.output[:]
    m.graph.output.extend(keep)
    onnx.save(m, str(dst))
    return dst


def optimize_onnx(src: Path, dst: Path, num_heads: int, hidden_size: int) -> Path:
    """ONNX Runtime's transformer fusion (Attention, SkipLayerNorm, BiasGelu) for CPU."""
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1)
    opt.save_model_to_file(str(dst))
    return dst


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic per-channel int8 (models.quantize.SHIPPED): of the recipes measured in docs/quantize.md
    (fp32 layers, static QDQ, smoothing) none made int8 + the fp32 recheck faster."""
    from models.quantize import quantize_item_graph

    with expected_export_warnings():
        return quantize_item_graph(src, dst)


@dataclass
class Parity:
    backend: str
    max_prob_diff: float
    topic_agreement: float
    sentiment_agreement: float


def compare(reference, candidate, texts: list[str], label: str = "") -> Parity:
    """Probabilities of two Scorers on the same texts: max abs difference, argmax agreement."""
    rt, rs, _ = reference.probabilities(texts)
    ct, cs, _ = candidate.probabilities(texts)
    diff = float(max(np.abs(rt - ct).max(), np.abs(rs - cs).max()))
    return Parity(label or candidate.backend.name, diff, float((rt.argmax(1) == ct.argmax(1)).mean()),
                  float((rs.argmax(1) == cs.argmax(1)).mean()))


def recheck_table(directory: Path, texts: list[str], grid=(0.0, 0.02, 0.05, 0.1, 0.115, 0.13, 0.15, 0.2, 0.25, 0.3, 0.4)) -> list[dict]:
    """For each margin: the share of texts the int8+fp32-recheck path scores twice, and its argmax
    agreement with the fp32 graph per head (computed from one pass of each graph)."""
    from models.runtime import Scorer, top2_margin

    ref = Scorer.from_artifact(directory, backend="onnx", precision="fp32")
    fast = Scorer.from_artifact(directory, backend="onnx", precision="int8", recheck_margin=0)
    rt, rs, _ = ref.logits(texts)
    qt, qs, _ = fast.logits(texts)
    low = np.minimum(top2_margin(qt), top2_margin(qs))
    rows = []
    for m in grid:
        redo = low < m
        rows.append({"margin": m, "rechecked": float(redo.mean()),
                     "topic_agreement": float((np.where(redo, rt.argmax(1), qt.argmax(1)) == rt.argmax(1)).mean()),
                     "sentiment_agreement": float((np.where(redo, rs.argmax(1), qs.argmax(1)) == rs.argmax(1)).mean())})
    return rows


def choose_recheck_margin(directory: Path, texts: list[str], target: float = 0.995) -> tuple[float, list[dict]]:
    """The smallest margin whose agreement reaches `target` on both heads on `texts` (which should be
    neither training nor dev text), written into finsent.json as int8_recheck_margin. A margin chosen on
    the texts it is then scored on comes out optimistic: choose on one set, report on another."""

    table = recheck_table(directory, texts)
    ok = [r for r in table if min(r["topic_agreement"], r["sentiment_agreement"]) >= target]
    margin = ok[0]["margin"] if ok else table[-1]["margin"]
    meta = read_meta_file(directory)
    meta["int8_recheck_margin"] = margin
    write_meta_file(directory, meta)
    return margin, table


def export(directory: Path, int8: bool = True, tensorrt: bool = False, progress=None) -> dict[str, Path]:
    """Write model.onnx (fused fp32) and, with int8, model.int8.onnx into the artifact directory;
    both output the encoder's token states too, which the per-entity head reads (no graph of its
    own: entity.onnx / entity.int8.onnx from earlier builds are removed)."""
    from transformers import AutoConfig

    directory = Path(directory)
    cfg = AutoConfig.from_pretrained(str(directory / "encoder"))
    out = {}
    steps = [("export to ONNX", None), ("fuse (ORT transformer optimiser)", None)]
    if int8:
        steps.append(("int8 dynamic quantisation", None))
    if tensorrt:
        steps.append(("TensorRT engine (fp16)", None))
    task = progress.add_task("export", total=len(steps)) if progress else None
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(directory, Path(tmp) / "raw.onnx")
        _advance(progress, task)
        out["fp32"] = optimize_onnx(raw, directory / "model.onnx", cfg.num_attention_heads, cfg.hidden_size)
        _advance(progress, task)
    if int8:
        out["int8"] = quantize_int8(out["fp32"], directory / "model.int8.onnx")
        _advance(progress, task)
    if tensorrt:
        from models.tensorrt import build_engine

        with tempfile.TemporaryDirectory() as tmp:
            out["tensorrt"] = build_engine(without_states(out["fp32"], Path(tmp) / "model.onnx"), directory)
        _advance(progress, task)
    for name in STALE_FILES:  # the per-entity graphs of earlier builds: the head reads the states above
        (directory / name).unlink(missing_ok=True)
    return out


def _advance(progress, task) -> None:
    if progress is not None:
        progress.advance(task)


def validate(directory: Path, precisions=("fp32", "int8"), texts: list[str] | None = None) -> list[Parity]:
    """Compare each ONNX graph with the PyTorch reference (fp32, CPU) on the same texts."""
    from models.runtime import Scorer

    texts = texts or SAMPLE_TEXTS
    reference = Scorer.from_artifact(directory, backend="torch", precision="fp32")
    return [compare(reference, Scorer.from_artifact(directory, backend="onnx", precision=p), texts, f"onnx-{p}")
            for p in precisions]


def validate_entity(directory: Path, pairs: list[tuple[str, list[list[int]]]] | None = None) -> float:
    """Max |p_onnx - p_torch| of the head on model.onnx's token states (numpy) against the PyTorch
    encoder + head on (text, spans) pairs."""
    from models.runtime import Scorer

    pairs = pairs or [("Apple beats estimates, Samsung slides on weak phone sales", [[0, 5]]),
                      ("Apple beats estimates, Samsung slides on weak phone sales", [[23, 30]]),
                      ("$TSLA down 8% premarket after deliveries miss estimates", [[0, 5]])]
    ref = Scorer.from_artifact(directory, backend="torch", precision="fp32").entity_sentiment(pairs)
    got = Scorer.from_artifact(directory, backend="onnx", precision="fp32").entity_sentiment(pairs)
    return max(abs(a.probs[k] - b.probs[k]) for a, b in zip(ref, got) for k in a.probs)
