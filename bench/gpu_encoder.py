"""GPU benchmark of the scoring model at the real length mix (run where CUDA is present):

    python bench/gpu_encoder.py --model DIR [--texts-from DIR]   # default FINSENT_DATA_DIR (../shared/data)

PyTorch FP16 eager vs `torch.compile` (FP16) vs ONNX Runtime (CUDA EP when the installed
onnxruntime has it, else said so), texts/s through the same runtime (tokenise once, sort by
length, pad per chunk). Prints a table; numbers go into README's benchmark section.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.texts import realistic_mix  # noqa: E402
from models.data import default_data_dir  # noqa: E402
from models.runtime import Meta, Scorer, Tokenizer, TorchBackend, make_backend  # noqa: E402


def timed(scorer: Scorer, texts: list[str], repeats: int = 3) -> float:
    scorer.predict(texts[:512])  # warm-up (and compilation for torch.compile)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        scorer.predict(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--texts-from", type=Path, default=None, help="the shared data folder (default: FINSENT_DATA_DIR)")
    ap.add_argument("--n", type=int, default=8192)
    args = ap.parse_args()
    import onnxruntime as ort
    import torch

    texts = realistic_mix(args.texts_from or Path(default_data_dir()), args.n)
    meta = Meta.load(args.model)
    tok = Tokenizer(args.model, meta.max_length, meta.mask_urls)
    eager = TorchBackend(args.model, device="cuda", fp16=True)
    compiled = TorchBackend(args.model, device="cuda", fp16=True)
    compiled.model = torch.compile(compiled.model, dynamic=True)
    variants = [("torch fp16 eager", eager), ("torch fp16 compile", compiled)]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        variants.append(("onnxruntime CUDA fp32", make_backend(args.model, "onnx", "fp32", "cuda")))
    else:
        print(f"onnxruntime here has no CUDA provider ({ort.get_available_providers()}); "
              "ORT measured on the host CPU cores instead")
        variants.append(("onnxruntime CPU fp32", make_backend(args.model, "onnx", "fp32", "cpu")))
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}  ort {ort.__version__}  texts {len(texts)}")
    print("| backend | batch | texts/s |\n|---|---|---|")
    for name, backend in variants:
        for batch in (64, 256):
            rate = timed(Scorer(backend, tok, meta, max_batch=batch), texts)
            print(f"| {name} | {batch} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
