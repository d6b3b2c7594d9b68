"""int8 recipes for the item graph, side by side (not a test): argmax agreement with the fp32 graph on
held-out real text, the near-tie recheck margin each needs for 99.5 % / 99.7 % agreement and the
share of items that margin sends to fp32, and texts/s of the int8 graph alone and with the recheck.

    python bench/quantize.py [--model DIR] [--threads 2] [--calibration 512] [--speed-n 2048]
                             [--candidates a,b,...] [--speed a,b] [--margins 0.15] [--sensitivity] [--work DIR]

Texts (FINSENT_DATA_DIR, the shared training files): held out = the artifact's own dev split
(models.data.stratified_split of the default sources, dev_fraction 0.1, seed 13, as training made
it: Twitter topic + sentiment tweets and PhraseBank sentences, 3,040 texts the model never trained
on); calibration = a seeded sample of the Twitter training rows (never the held-out ones), tokenised
and padded per length bucket like the runtime (so every length is seen). Agreement counts both
heads on every held-out text. Speed: each graph behind models.runtime's Scorer (length buckets,
batch 64), one process, `--threads` ONNX Runtime intra-op threads, the same `--speed-n` held-out texts
(a seeded sample of all sources),
fastest of `--repeats` passes, graphs interleaved pass by pass so other load hits them alike.
Texts per CPU-second (process CPU time, tokenizer included) is the column to compare on a shared
machine: with `--threads 1` (no spinning worker threads) it counts the work, not the waiting.
`--sensitivity` quantises one encoder layer's ops at a time (dynamic) to show where flips come from.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.artifact import DEFAULT_ARTIFACT, Meta  # noqa: E402
from models.data import default_data_dir, default_sources, load_source, stratified_split  # noqa: E402
from models.quantize import (ALL_OPS, ENCODER_OPS, Recipe, agreement, calibration_batches,  # noqa: E402
                             margin_for, quantize_dynamic_graph, quantize_static_graph, smooth)
from models.runtime import OnnxBackend, RecheckedBackend, Scorer, Tokenizer  # noqa: E402

TARGETS = (0.995, 0.997)
# name -> (recipe, note); "today" is models/export.py quantize_int8 as shipped
CANDIDATES = {
    "today": (Recipe("dynamic", True, ALL_OPS), "(a) export.py today: dynamic, per-channel, every op incl. embeddings + heads"),
    "dyn-tensor": (Recipe("dynamic", False, ALL_OPS), "(b) dynamic, per-tensor weights, every op"),
    "dyn-encoder": (Recipe("dynamic", True, ENCODER_OPS), "(d) dynamic per-channel, embeddings fp32 (heads int8)"),
    "dyn-encoder-tensor": (Recipe("dynamic", False, ENCODER_OPS), "(d) as above, per-tensor weights"),
    "dyn-no-ffn-out": (Recipe("dynamic", True, ENCODER_OPS, tuple(f"layer.{i}/output/dense" for i in range(6))),
                       "(d) dyn-encoder, FFN output projections (after GELU) fp32"),
    "dyn-no-attention": (Recipe("dynamic", True, ("MatMul",)), "(d) dyn-encoder, fused Attention (QKV) fp32"),
    "dyn-no-layer0-2": (Recipe("dynamic", True, ENCODER_OPS, ("layer.0/", "layer.1/", "layer.2/", "Attention_0",
                                                               "Attention_1", "Attention_2")),
                        "(d) dyn-encoder, layers 0-2 fp32"),
    "dyn-fp32-layer0-1": (Recipe("dynamic", True, ENCODER_OPS, ("layer.0/", "layer.1/", "Attention_0", "Attention_1")),
                          "(d) dyn-encoder, layers 0-1 fp32"),
    "dyn-fp32-ffnout-0-2": (Recipe("dynamic", True, ENCODER_OPS, tuple(f"layer.{i}/output/dense" for i in range(3))),
                            "(d) dyn-encoder, FFN output projections of layers 0-2 fp32"),
    "dyn-fp32-layer0-ffnout": (Recipe("dynamic", True, ENCODER_OPS, ("layer.0/", "Attention_0",
                                                                       *(f"layer.{i}/output/dense" for i in range(6)))),
                               "(d) dyn-encoder, layer 0 and every FFN output projection fp32"),
    "smooth-0.5": (Recipe("smooth", True, ENCODER_OPS, alpha=0.5), "SmoothQuant α 0.5 (calibrated), then dyn-encoder"),
    "smooth-0.2": (Recipe("smooth", True, ENCODER_OPS, alpha=0.2), "SmoothQuant α 0.2 (calibrated), then dyn-encoder"),
    "static-minmax": (Recipe("minmax", True, ("MatMul",)), "(c) static QDQ MinMax, per-channel (Attention fp32)"),
    "static-percentile": (Recipe("percentile", True, ("MatMul",)), "(c) static QDQ Percentile 99.999"),
    "static-entropy": (Recipe("entropy", True, ("MatMul",)), "(c) static QDQ Entropy"),
}


def held_out_and_calibration(data_dir: Path, n_cal: int, seed: int = 13) -> tuple[list[str], list[str]]:
    held, pool = [], []
    for spec in default_sources(data_dir):
        train, dev = stratified_split(load_source(spec), 0.1, seed)
        held += [e.text for e in dev]
        if spec.format == "csv":  # the Twitter sets
            pool += [e.text for e in train]
    return held, random.Random(seed).sample(pool, min(n_cal, len(pool)))


def scorer(backend, tok: Tokenizer, meta: Meta, batch: int = 64) -> Scorer:
    return Scorer(backend, tok, meta, max_batch=batch)


def logits(path: Path, texts: list[str], tok, meta, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """The graph's logits on `texts`, kept beside a graph built in the work folder (rebuilt with it)."""
    keep = path.with_suffix(f".logits{len(texts)}.npz")
    if keep.exists() and keep.stat().st_mtime >= path.stat().st_mtime and path.parent != DEFAULT_ARTIFACT:
        z = np.load(keep)
        return z["topic"], z["sentiment"]
    t, s, _ = scorer(OnnxBackend(path, threads=threads), tok, meta).logits(texts)
    if path.parent != DEFAULT_ARTIFACT:
        np.savez(keep, topic=t, sentiment=s)
    return t, s


def build(name: str, recipe: Recipe, fp32: Path, work: Path, feeds) -> Path:
    out = work / f"{name}.onnx"
    if out.exists() and out.stat().st_mtime > fp32.stat().st_mtime:  # built from this fp32 graph
        return out
    if recipe.method == "dynamic":
        return quantize_dynamic_graph(fp32, out, recipe)
    if recipe.method == "smooth":
        return quantize_dynamic_graph(smooth(fp32, work / f"{name}.fp32.onnx", feeds, recipe.alpha), out, recipe)
    cache = work / f"ranges-{recipe.method}.json"  # one calibration per method, reused while fp32 is unchanged
    if cache.exists() and cache.stat().st_mtime < fp32.stat().st_mtime:
        cache.unlink()
    return quantize_static_graph(fp32, out, feeds, recipe, cache=cache)


def speed(paths: dict[str, tuple[Path, tuple[float, ...]]], fp32: Path, texts, tok, meta, threads: int,
          repeats: int) -> dict:
    """texts/s per (graph, margin): the int8 graph alone, and behind RecheckedBackend at each margin."""
    exact = OnnxBackend(fp32, threads=threads, spin=False)
    runs = {"fp32": scorer(OnnxBackend(fp32, threads=threads), tok, meta)}
    for name, (path, margins) in paths.items():
        runs[f"{name} alone"] = scorer(OnnxBackend(path, threads=threads), tok, meta)
        for margin in sorted(set(margins) - {0.0}):
            fast = OnnxBackend(path, threads=threads, spin=False)
            runs[f"{name} +recheck {margin:.3f}"] = scorer(RecheckedBackend(fast, exact, margin), tok, meta)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(repeats):
        for key, sc in runs.items():
            sc.logits(texts[:64])  # warm-up
            c0, t0 = time.process_time(), time.perf_counter()
            sc.logits(texts)
            c1, t1 = time.process_time(), time.perf_counter()
            wall[key] = max(wall.get(key, 0.0), len(texts) / (t1 - t0))
            cpu[key] = max(cpu.get(key, 0.0), len(texts) / (c1 - c0))
    fired = {k: sc.backend.rechecked / max(sc.backend.rows, 1) for k, sc in runs.items()
             if isinstance(sc.backend, RecheckedBackend)}
    return {k: (wall[k], cpu[k], fired.get(k)) for k in wall}


def sensitivity(fp32: Path, work: Path, ref, held, tok, meta, threads: int, console: Console) -> None:
    """One layer's encoder ops quantised at a time (everything else fp32), and the heads / embeddings alone."""
    import onnx

    nodes = [(n.name, n.op_type) for n in onnx.load(str(fp32), load_external_data=False).graph.node]
    quantisable = [n for n, op in nodes if op in ALL_OPS]
    groups = {f"layer {i}": [n for n in quantisable if f"layer.{i}/" in n or n == f"Attention_{i}"] for i in range(6)}
    groups["heads (Gemm)"] = [n for n, op in nodes if op == "Gemm"]
    groups["embeddings"] = [n for n, op in nodes if op == "EmbedLayerNormalization"]
    t = Table(title="sensitivity: only this group int8 (dynamic per-channel), the rest fp32")
    for col in ("group", "nodes", "topic flips", "sentiment flips", "max |Δlogit|"):
        t.add_column(col, justify="right")
    for g, names in groups.items():
        out = work / f"only-{g.replace(' ', '_').replace('(', '').replace(')', '')}.onnx"
        if not out.exists() or out.stat().st_mtime < fp32.stat().st_mtime:
            quantize_dynamic_graph(fp32, out, Recipe("dynamic", True, ALL_OPS, tuple(n for n in quantisable if n not in names)))
        got = logits(out, held, tok, meta, threads)
        flips = [int((r.argmax(1) != q.argmax(1)).sum()) for r, q in zip(ref, got)]
        diff = max(float(np.abs(r - q).max()) for r, q in zip(ref, got))
        t.add_row(g, str(len(names)), str(flips[0]), str(flips[1]), f"{diff:.3f}")
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    ap.add_argument("--data-dir", type=Path, default=None, help="the shared data folder (default: FINSENT_DATA_DIR)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (and the tokenizer's)")
    ap.add_argument("--calibration", type=int, default=512, help="calibration texts (static recipes)")
    ap.add_argument("--speed-n", type=int, default=2048, help="held-out texts scored per speed pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--speed", default="today,dyn-fp32-ffnout-0-2,dyn-fp32-layer0-1,dyn-no-layer0-2",
                    help="candidates timed: alone, and with the recheck at their 99.5 %% and 99.7 %% margins")
    ap.add_argument("--margins", default="0.15", help="more recheck margins to time today's graph at")
    ap.add_argument("--sensitivity", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("var/quantize"), help="built graphs are kept here")
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before the tokenizer starts its pool
    console = Console(width=160)
    meta = Meta.load(args.model)
    tok = Tokenizer(args.model, meta.max_length, meta.mask_urls)
    fp32 = args.model / "model.onnx"
    held, cal = held_out_and_calibration(args.data_dir or Path(default_data_dir()), args.calibration)
    args.work.mkdir(parents=True, exist_ok=True)
    feeds = calibration_batches(cal, tok)
    ref = logits(fp32, held, tok, meta, args.threads)
    if args.sensitivity:
        sensitivity(fp32, args.work, ref, held, tok, meta, args.threads, console)
    t = Table(title=f"int8 item graph vs fp32 — {len(held)} held-out texts (dev split), {len(cal)} calibration texts "
                    f"in {len(feeds)} batches of lengths {min(f['input_ids'].shape[1] for f in feeds)}–"
                    f"{max(f['input_ids'].shape[1] for f in feeds)}")
    for col in ("candidate", "topic agree", "sentiment agree", "margin for 99.5 %", "rechecked", "margin for 99.7 %",
                "rechecked ", "what"):
        t.add_column(col, justify="left" if col in ("candidate", "what") else "right")
    margins = {}
    for name in args.candidates.split(","):
        recipe, note = CANDIDATES[name]
        got = logits(build(name, recipe, fp32, args.work, feeds), held, tok, meta, args.threads)
        ta, sa, _ = agreement(ref, got)
        (m5, f5), (m7, f7) = (margin_for(ref, got, x) for x in TARGETS)
        margins[name] = (m5, m7)
        t.add_row(name, f"{ta:.2%}", f"{sa:.2%}", f"{m5:.3f}", f"{f5:.1%}", f"{m7:.3f}", f"{f7:.1%}", note)
    console.print(t)
    extra = tuple(float(m) for m in args.margins.split(",") if m)
    timed = {n: (args.work / f"{n}.onnx", margins[n] + (extra if n == "today" else ()))
             for n in args.speed.split(",") if n in margins}
    if timed:
        sample = random.Random(7).sample(held, min(args.speed_n, len(held)))  # every source, not the first one
        rates = speed(timed, fp32, sample, tok, meta, args.threads, args.repeats)
        s = Table(title=f"texts/s, {min(args.speed_n, len(held))} held-out texts, batch 64, {args.threads} ORT threads, "
                        f"best of {args.repeats}; {os.cpu_count()} cores ({platform.processor() or platform.machine()}),"
                        " shared with other work: compare rows of this table only")
        for col in ("graph", "texts/s (wall)", "× fp32", "texts per CPU-s", "× fp32 ", "rechecked"):
            s.add_column(col, justify="left" if col == "graph" else "right")
        for k, (rate, per_cpu, fired) in rates.items():
            s.add_row(k, f"{rate:,.0f}", f"{rate / rates['fp32'][0]:.2f}×", f"{per_cpu:,.0f}",
                      f"{per_cpu / rates['fp32'][1]:.2f}×", "" if fired is None else f"{fired:.1%}")
        console.print(s)


if __name__ == "__main__":
    main()
