"""Model benchmark (not a test): texts/s and p50/p99 batch latency per backend and batch size,
side by side with what a user would otherwise write: two Hugging Face
`pipeline("text-classification")` objects (topic, sentiment) on an encoder of the same size
(MiniLM-L6), batch_size 32.

    python bench/model.py [--n 1024] [--texts-from ../shared/data] [--batches 1,8,32,64,256]

Texts: a realistic mix of finance tweets and headlines (bench/texts.py). Each cell scores the
same N texts once after a warm-up; latency percentiles are over that cell's batches.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.texts import realistic_mix  # noqa: E402
from models.runtime import DEFAULT_ARTIFACT, Scorer  # noqa: E402


def run_cell(score_batch, texts: list[str], batch: int) -> tuple[float, float, float]:
    score_batch(texts[: min(batch, 32)])  # warm-up
    lat = []
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        s = time.perf_counter()
        score_batch(texts[i : i + batch])
        lat.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    return len(texts) / total, float(np.percentile(lat, 50)) * 1e3, float(np.percentile(lat, 99)) * 1e3


def pipelines_baseline():
    """Two pipelines on the same-size encoder (untrained heads: speed is what is compared)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from models.network import default_encoder_dir

    enc = str(default_encoder_dir())
    tok = AutoTokenizer.from_pretrained(enc)
    pipes = [pipeline("text-classification", model=AutoModelForSequenceClassification.from_pretrained(enc, num_labels=n),
                      tokenizer=tok, device=-1, top_k=None) for n in (20, 3)]
    return lambda texts: [p(texts, batch_size=32, truncation=True) for p in pipes]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--texts-from", type=Path, default=Path("../shared/data"))
    ap.add_argument("--batches", default="1,8,32,64,256")
    ap.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    ap.add_argument("--backends", default="onnx-int8,onnx-fp32,torch-fp32")
    args = ap.parse_args()
    texts = realistic_mix(args.texts_from, args.n)
    batches = [int(b) for b in args.batches.split(",")]
    console = Console()
    table = Table(title=f"finsent model benchmark — {len(texts)} texts, {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
    for col in ("backend", "batch", "texts/s", "p50 ms/batch", "p99 ms/batch"):
        table.add_column(col, justify="right" if col != "backend" else "left")
    rates = {}
    for spec in args.backends.split(","):
        backend, precision = spec.split("-")
        if not (args.model / ("model.onnx" if precision == "fp32" and backend == "onnx" else "model.safetensors")).exists():
            console.print(f"[yellow]skip {spec}: build model.onnx first (`finsent export`)[/yellow]")
            continue
        for b in batches:
            scorer = Scorer.from_artifact(args.model, backend=backend, precision=precision, max_batch=b)
            rate, p50, p99 = run_cell(scorer.predict, texts, b)
            rates[(spec, b)] = rate
            table.add_row(spec, str(b), f"{rate:,.0f}", f"{p50:.1f}", f"{p99:.1f}")
    base_rate, p50, p99 = run_cell(pipelines_baseline(), texts, 32)
    table.add_row("2× HF pipeline (baseline)", "32", f"{base_rate:,.0f}", f"{p50:.1f}", f"{p99:.1f}")
    console.print(table)
    best = max(rates.items(), key=lambda kv: kv[1])
    default = max((r for (s, _), r in rates.items() if s == "onnx-int8"), default=float("nan"))
    console.print(f"default backend (onnx-int8, best batch) / baseline: {default / base_rate:.1f}×; "
                  f"best cell {best[0]} {best[1]:,.0f} texts/s")


if __name__ == "__main__":
    main()
