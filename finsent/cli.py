"""The `finsent` command line (typer). Each command is a thin shell over a plain function.

    finsent train --data-dir ../shared/data --output models/artifacts/my-model
    finsent evaluate --model models/artifacts/finsent-minilm-v1
    finsent export --model DIR [--no-int8] [--tensorrt]
    finsent predict --input FILE [--text-column text] --output OUT.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress

app = typer.Typer(add_completion=False, no_args_is_help=True, help="finsent: streaming financial sentiment.")
console = Console(stderr=True)

ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="artifact directory")]


def _default_model() -> Path:
    from models.runtime import DEFAULT_ARTIFACT

    return DEFAULT_ARTIFACT


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, markup=True, highlight=False)
    raise typer.Exit(code)


@app.command()
def train(
    output: Annotated[Path, typer.Option(help="artifact directory to write")],
    data_dir: Annotated[Path, typer.Option(help="folder with the shared training files")] = Path("../shared/data"),
    source: Annotated[Optional[list[str]], typer.Option(help="TASK:FORMAT:PATH[:MAP], repeatable; replaces the defaults")] = None,
    encoder: Annotated[str, typer.Option(help="'minilm' (packaged), a local HF directory, or a hub id")] = "minilm",
    epochs: int = 6, batch_size: int = 32, lr: float = 8e-5, max_length: int = 128, seed: int = 13,
    dev_fraction: float = 0.1, patience: int = 2,
    topic_weighting: Annotated[str, typer.Option(help="none | sqrt_inv | inv")] = "sqrt_inv",
    label_smoothing: float = 0.0,
    limit: Annotated[int, typer.Option(help="use only N training examples (smoke runs)")] = 0,
    device: str = "auto", resume: bool = False, version: str = "",
) -> None:
    """Fine-tune the multi-task topic + sentiment model (progress bar; checkpoints every epoch)."""
    from models.data import DataError
    from models.train import TrainConfig
    from models.train import train as run

    cfg = TrainConfig(output=str(output), sources=source or [], data_dir=str(data_dir), encoder=encoder, epochs=epochs,
                      batch_size=batch_size, lr=lr, max_length=max_length, seed=seed, dev_fraction=dev_fraction,
                      patience=patience, topic_weighting=topic_weighting, label_smoothing=label_smoothing, limit=limit, device=device, resume=resume,
                      version=version)
    try:
        report = run(cfg)
    except DataError as exc:
        fail(str(exc))
    for head, r in report["heads"].items():
        console.print(f"{head}: accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ECE {r['ece']:.4f}")


@app.command()
def evaluate(
    model: ModelOpt = None,
    data_dir: Path = Path("../shared/data"),
    source: Annotated[Optional[list[str]], typer.Option(help="TASK:FORMAT:PATH[:MAP]; default: the model's dev split")] = None,
    backend: str = "onnx", precision: str = "auto",
    output: Annotated[Optional[Path], typer.Option(help="write <output>.json and <output>.md")] = None,
) -> None:
    """Accuracy, macro-F1, per-class P/R/F1, confusion and ECE per head (JSON + Markdown)."""
    from models.data import DataError
    from models.evaluate import evaluate as run

    model = model or _default_model()
    try:
        report, md = run(model, data_dir, source or [], backend, precision)
    except DataError as exc:
        fail(str(exc))
    out = output or (model / f"eval-{backend}-{precision}")
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(md)
    console.print(md)


@app.command()
def export(model: ModelOpt = None, int8: bool = True, tensorrt: bool = False, check: bool = True) -> None:
    """ONNX graph with both heads, ORT fusion, optional int8 and TensorRT engine; parity check."""
    from models.export import export as run
    from models.export import validate

    model = model or _default_model()
    with Progress(console=console) as progress:
        paths = run(model, int8=int8, tensorrt=tensorrt, progress=progress)
    for kind, path in paths.items():
        console.print(f"{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if check:
        for p in validate(model, precisions=[k for k in paths if k in ("fp32", "int8")]):
            console.print(f"parity vs torch ({p.backend}): max |Δp| {p.max_prob_diff:.2e}, "
                          f"argmax agreement topic {p.topic_agreement:.3f} sentiment {p.sentiment_agreement:.3f}")


@app.command()
def predict(
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or JSONL file")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL to write")],
    text_column: str = "text",
    format: Annotated[Optional[str], typer.Option(help="csv | jsonl (default: from the suffix)")] = None,
    model: ModelOpt = None, backend: str = "onnx", precision: str = "auto", device: str = "cpu",
) -> None:
    """Score a CSV/JSONL file: one JSON object per input row, in input order."""
    from models.data import DataError
    from models.predict_file import predict_file
    from models.runtime import Scorer

    try:
        scorer = Scorer.from_artifact(model or _default_model(), backend=backend, precision=precision, device=device)
        with Progress(console=console) as progress:
            counts = predict_file(scorer, input, output, text_column, format, progress=progress)
    except (DataError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(f"{counts['scored']} scored, {counts['errors']} errors, {counts['rows']} rows -> {output} "
                  f"(model {scorer.version})")



@app.command()
def demo(output: Path = Path("var/demo/scored.jsonl")) -> None:
    """Score the bundled sample headlines with the committed model and show the result."""
    from rich.table import Table

    from models.predict_file import predict_file
    from models.runtime import Scorer

    src = Path(__file__).resolve().parents[1] / "scripts" / "demo_headlines.csv"
    output.parent.mkdir(parents=True, exist_ok=True)
    scorer = Scorer.from_artifact(_default_model())
    predict_file(scorer, src, output)
    table = Table(title=f"finsent demo — model {scorer.version} (ONNX Runtime, CPU)")
    for col in ("text", "topic", "sentiment", "score"):
        table.add_column(col)
    import csv

    with open(src, encoding="utf-8") as fh:
        for row, line in zip(csv.DictReader(fh), output.read_text().splitlines()):
            p = json.loads(line)
            table.add_row(row["text"][:70], p["topic"], p["sentiment"], f"{p['score']:+.2f}")
    Console().print(table)
    console.print(f"wrote {output}")


def main() -> None:
    app(prog_name="finsent")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
