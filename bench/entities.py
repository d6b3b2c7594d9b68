"""Entity linking speed and quality (a benchmark, not a test).

    .venv/bin/python bench/entities.py [--n 10000] [--data-dir ../shared/data] [--names 10000]
    .venv/bin/python bench/entities.py --only sentiment [--pairs 1500]
    .venv/bin/python bench/entities.py --only cost [--cost-n 2000]
    .venv/bin/python bench/entities.py --only int8 [--cost-n 6000]   # int8 token states + recheck vs fp32
    .venv/bin/python bench/entities.py --only predict [--predict-n 4000] # `finsent predict` entities on vs off

Speed: `Linker.link` over n realistic texts (finance tweets, headlines and PhraseBank sentences
from the shared files when present, else the project's synthetic feed), one thread, best of 3
passes, for the shipped directory and for the shipped directory padded with synthetic SEC-style
companies (random-syllable names, 'Inc'/'Corp' suffixes) to at least --names names.
Quality: precision/recall on tests/data/entities_eval.jsonl (written by hand, with hard negatives),
and, when the shared tweets are present, recall of name linking on every tweet whose cashtag's
company is also named in it, with the cashtags removed (ask for the ticker back).
Per-entity sentiment (when the shared data is present): two-entity items of opposite and of the
same tone, built from held-out text only (models.entity_sentiment.build_pairs: 'clause about A
<joiner> clause about B', each entity keeping its own text's label), from (a) the tweets the
shipped model and the head never trained on (the head's test half) and (b) the held-out FiQA
(20 % of sentences) and SemEval-2017 test single-target items; plus (c) the real multi-company
items of those test sets. Each entity is read four ways: the item's sentiment (what every entity
got before the head), the head on the whole text, the shipped path (models.entity_scores: the
head on the whole text and on the entity's own clause, averaged) given the gold entity, and as
served: the linker's own entities and relevance through the shipped path, each gold entity taking
the reading of the linked entity its span overlaps (wrong where none was linked).
"""
from __future__ import annotations

import argparse
import csv
import random
import re
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.texts import realistic_mix  # noqa: E402
from core.settings import get_settings  # noqa: E402
from models.entities import Directory, Linker, names  # noqa: E402
from models.entities.directory import Record, _curated, build  # noqa: E402
from models.entities.evaluation import read_items, score  # noqa: E402

SYLLABLES = "ka lo ri ven tor ax qui zel mor dan pex lum gri sol tav nor wex bri cal dor fen".split()
SUFFIXES = ["Inc.", "Corp.", "Holdings, Inc.", "Group plc", "Technologies Inc."]


def padded(base: Directory, n_names: int, seed: int = 3) -> Directory:
    """The shipped directory plus synthetic SEC-style companies until it holds n_names names."""
    rng = random.Random(seed)
    recs = [Record(s.ticker, s.name, s.exchange, list(s.aliases), s.issuer) for s in base.symbols.values()]
    i, d = 0, base
    while d.n_names() < n_names:
        for _ in range((n_names - d.n_names()) // 2 + 50):
            word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).title()
            kind = rng.choice(["Systems", "Energy", "Bio", "Labs", "Foods", "Metals", "Motors", "Pharma"])
            recs.append(Record(f"Z{i:05d}", f"{word} {kind} {rng.choice(SUFFIXES)}", "US", [], f"synthetic-{i}"))
            i += 1
        d = build(recs, source=f"{base.source}+synthetic{i}", curated=_curated())
    return d


def rate(linker: Linker, texts: list[str], repeats: int = 5) -> tuple[float, float, float]:
    """Texts per second by wall clock and by this process's CPU time (best of `repeats`, after a
    warm-up pass), and entities per text. CPU time is the steadier figure on a shared machine."""
    found = sum(len(linker.link(x)) for x in texts)
    wall = cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for x in texts:
            linker.link(x)
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return len(texts) / wall, len(texts) / cpu, found / len(texts)


def cashtag_dropped(d: Directory, linker: Linker, data_dir: Path) -> tuple[int, int] | None:
    path = data_dir / "twitter_financial_news_topic/topic_train.csv"
    if not path.exists():
        return None
    texts = []
    for p in (data_dir / "twitter_financial_news_sentiment/sent_train.csv", path):
        with open(p, encoding="utf-8", newline="") as fh:
            texts += [r["text"] for r in csv.DictReader(fh)]
    tag = re.compile(r"\$([A-Za-z]{1,6})\b")
    hit = total = 0
    for x in texts:
        for tk in {m.upper() for m in tag.findall(x)}:
            s = d.get(tk)
            if s is None or not any(re.search(r"(?<![\w$])" + re.escape(names.key(a)) + r"(?!\w)", x.lower())
                                    for a in s.aliases):
                continue
            total += 1
            got = {e.ticker for e in linker.link(tag.sub("", x))}
            hit += bool(got & {c.ticker for c in d.classes(tk)})
    return hit, total


def target_recall(linker: Linker, data_dir: Path) -> dict[str, tuple[int, int]]:
    """Of the companies FiQA 2018 and SemEval-2017 task 5 annotate in a text, how many the linker finds
    (its entity's span overlaps the target's), on the training files and on SemEval's test files."""
    from models.entity_sentiment import load_fiqa, load_semeval

    try:
        fiqa, _ = load_fiqa(data_dir)
        train, test, _ = load_semeval(data_dir)
    except (OSError, ValueError, KeyError):
        return {}

    def found(items) -> tuple[int, int]:
        hit = 0
        for it in items:
            spans = [sp for e in linker.link(it.text) for sp in e.spans]
            hit += any(s < e2 and s2 < e for s, e in spans for s2, e2 in it.spans)
        return hit, len(items)

    return {"FiQA 2018 + SemEval-2017 train, annotated companies": found(fiqa + train),
            "SemEval-2017 test, annotated companies": found(test)}


def sentiment_sets(data_dir: Path, n_pairs: int, seed: int = 13) -> dict[str, list]:
    """{set name: [(text, [gold label per entity], [spans per entity]), ...]} from held-out text."""
    from models.entity_sentiment import build_dataset, build_pairs

    sets, _ = build_dataset(data_dir, seed, 6000, n_pairs, 4000)  # the head's own held-out split
    test = sets["test"]
    built = [i for i in test if i.source == "tweet_pair"]
    singles = [i for i in test if i.source.startswith(("fiqa", "semeval"))]
    by_text: dict[str, list] = {}
    for i in singles:
        by_text.setdefault(i.text, []).append(i)
    one_target = [v[0] for v in by_text.values() if len(v) == 1 and 15 <= len(v[0].text) <= 200]
    natural = [v for v in by_text.values() if len({i.ticker.lower() for i in v}) > 1]
    out = {"tweets (built)": _groups(built),
           "FiQA + SemEval test (built)": _groups(build_pairs(one_target, n_pairs, seed + 200)),
           "FiQA + SemEval test, real multi-company": [(v[0].text, [i.label for i in v], [i.spans for i in v])
                                                       for v in natural]}
    return out


def _groups(items: list) -> list:
    by: dict[str, list] = {}
    for i in items:
        by.setdefault(i.group, []).append(i)
    return [(v[0].text, [i.label for i in v], [i.spans for i in v]) for v in by.values() if len(v) == 2]


def read_entities(scorer, rows: list) -> dict[str, list[list[int]]]:
    """Per way of reading, per row, the label index given to each entity."""
    from models.entities import Entity
    from models.entity_scores import entity_sentiments
    from models.entity_sentiment import LABELS

    texts = [t for t, _, _ in rows]
    preds = scorer.predict(texts)
    ents = [[Entity(f"E{k}", None, 1.0, tuple(tuple(x) for x in sp)) for k, sp in enumerate(spans)]
            for _, _, spans in rows]
    pairs = [(t, sp) for t, _, spans in rows for sp in spans]
    head = iter(scorer.entity_sentiment(pairs))
    shipped = entity_sentiments(scorer, list(zip(texts, preds)), ents)
    # as served: the linker's own entities and relevance (what `finsent predict`, the API and the
    # worker read); a gold entity takes the reading of the linked entity whose spans overlap its
    # own, and is wrong (-1) where none was linked
    linker = Linker(Directory.default())
    linked = [linker.link(t) for t in texts]
    served = entity_sentiments(scorer, list(zip(texts, preds)), linked)

    def overlap(a, b) -> bool:
        return any(s < e2 and s2 < e for s, e in a for s2, e2 in b)

    as_served = []
    for (_, g, spans), ents_k, scores in zip(rows, linked, served):
        row = []
        for sp in spans:
            hit = [x for e, x in zip(ents_k, scores) if e.spans and overlap(e.spans, sp)]
            row.append(LABELS.index(hit[0].sentiment) if hit else -1)
        as_served.append(row)
    return {"item's sentiment": [[LABELS.index(p.sentiment)] * len(g) for p, (_, g, _) in zip(preds, rows)],
            "head, whole text": [[LABELS.index(next(head).sentiment) for _ in g] for _, g, _ in rows],
            "shipped (head, whole text + own clause)": [[LABELS.index(x.sentiment) for x in r] for r in shipped],
            "as served (the linker's entities and relevance)": as_served}


def sentiment_table(data_dir: Path, n_pairs: int, console: Console, model: Path) -> None:
    from models.runtime import Scorer

    scorer = Scorer.from_artifact(model, threads=1)
    table = Table(title="Per-entity sentiment on two-entity items, held-out text (labels negative/neutral/positive)")
    for col in ("set", "tone", "items", "reading", "entities right", "both right"):
        table.add_column(col, justify="left" if col in ("set", "tone", "reading") else "right")
    for name, rows in sentiment_sets(data_dir, n_pairs).items():
        reads = read_entities(scorer, rows)
        kinds = [("opposite", lambda g: {g[0], g[1]} == {0, 2}), ("same", lambda g: len(set(g)) == 1)]
        if "real" in name:
            kinds = [("any", lambda g: True)] + kinds[:1]
        for tone, keep in kinds:
            sel = [k for k, (_, g, _) in enumerate(rows) if keep(g)]
            if not sel:
                continue
            for reading, pred in reads.items():
                right = [[p == y for p, y in zip(pred[k], rows[k][1])] for k in sel]
                table.add_row(name, tone, str(len(sel)), reading, f"{sum(map(sum, right)) / sum(map(len, right)):.3f}",
                              f"{sum(map(all, right)) / len(right):.3f}")
        table.add_section()
    console.print(table)
    console.print("entities right: share of (item, entity) labels right; both right: items whose entities are all "
                  "right. Built items: two single-target held-out texts joined by ', while ', '; ', '. ', ' | ', "
                  "', but ', ' - ', ' as ' or ', and '. ONNX Runtime, CPU.")


def cost_table(data_dir: Path, n: int, console: Console, model: Path, batch: int = 128) -> None:
    """CPU time per item of the entity work against the model's, on the texts bench/pipeline.py
    --texts-from replays, in the worker's order: per batch of `batch` texts, predict, link, then
    the per-entity head on the items that name several entities (both readings: whole text and own
    clause; the whole text's token states are the ones predict just computed). One ONNX thread,
    process CPU time, best of 3 passes; the ratio is what entities add to the worker's scoring
    cost (its Kafka and Postgres work comes on top, so the end-to-end share is smaller)."""
    from models.entity_scores import entity_sentiments
    from models.runtime import Scorer

    texts = realistic_mix(data_dir, n)
    scorer, linker = Scorer.from_artifact(model, threads=1), Linker(Directory.default())
    scorer.predict(texts[:64])
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    multi = sum(len(linker.link(x)) > 1 for x in texts)
    counts = hasattr(scorer, "entity_reencoded")  # runtimes that read the item pass's token states
    best = [float("inf")] * 3
    for _ in range(3):
        spent = [0.0] * 3
        scorer.entity_pairs = scorer.entity_reencoded = scorer.entity_fp32_texts = scorer.entity_rechecked = 0
        for b in batches:
            c0 = time.process_time()
            preds = scorer.predict(b)
            c1 = time.process_time()
            ents = [linker.link(x) for x in b]
            c2 = time.process_time()
            entity_sentiments(scorer, list(zip(b, preds)), ents)
            c3 = time.process_time()
            spent = [spent[0] + c1 - c0, spent[1] + c2 - c1, spent[2] + c3 - c2]
        best = [min(x, y) for x, y in zip(best, spent)]
    model_s, link, head = best
    t = Table(title=f"CPU cost per item: {len(texts):,} texts (bench/texts.py mix) in batches of {batch}, {multi:,} "
                    f"({multi / len(texts):.1%}) name several entities; precision {scorer.precision}, one ONNX "
                    f"thread, best of 3")
    for col in ("step", "ms per item (CPU)", "vs the model", "share of scoring"):
        t.add_column(col, justify="left" if col == "step" else "right")
    total = model_s + link + head
    t.add_row("model (predict: topic + sentiment)", f"{1000 * model_s / len(texts):.2f}", "1.000",
              f"{model_s / total:.3f}")
    t.add_row("linking (Linker.link)", f"{1000 * link / len(texts):.3f}", f"{link / model_s:.3f}", f"{link / total:.3f}")
    t.add_row("per-entity head (items naming several)", f"{1000 * head / len(texts):.3f}", f"{head / model_s:.3f}",
              f"{head / total:.3f}")
    t.add_row("entities in all", f"{1000 * (link + head) / len(texts):.3f}", f"{(link + head) / model_s:.3f}",
              f"{(link + head) / total:.3f}")
    console.print(t)
    if counts:
        console.print(f"last pass: {scorer.entity_pairs:,} head readings; {scorer.entity_reencoded:,} texts encoded "
                      f"for the head (own clauses: predict never saw them); {scorer.entity_rechecked:,} readings on "
                      f"int8 states reread on fp32 states of {scorer.entity_fp32_texts:,} texts encoded again in fp32")


def int8_table(data_dir: Path, n: int, console: Console, model: Path) -> None:
    """The head on the int8 item graph's token states (what an int8 scorer reads first) against the
    head on the fp32 graph's states: argmax agreement and share read again on fp32 states, per
    margin, on every (text, entity) pair of the multi-entity items of the mix (whole texts: the
    states `predict` computed; the shipped margin: models.entity_inputs.INT8_RECHECK_MARGIN). The
    int8 item path as shipped (its own near-ties rescored by fp32, their states too)."""
    import numpy as np

    from models.entity_inputs import INT8_RECHECK_MARGIN
    from models.runtime import Scorer

    texts = realistic_mix(data_dir, n, seed=11)
    linker = Linker(Directory.default())
    multi = [t for t in texts if len(linker.link(t)) > 1]
    pairs = [(t, [list(s) for s in e.spans]) for t in multi for e in linker.link(t) if e.spans]

    def probs(scorer):
        scorer.predict(multi)  # as the worker does: the item pass first (its states kept), then the head
        return np.array([[r.probs[k] for k in ("negative", "neutral", "positive")]
                         for r in scorer.entity_sentiment(pairs)])

    ref = probs(Scorer.from_artifact(model, precision="fp32")).argmax(1)
    fast = Scorer.from_artifact(model, precision="int8")
    fast.entity_recheck_margin = 0.0
    raw = probs(fast)
    exact = np.array([fast.states.get(t)[1] for t, _ in pairs])
    low = np.sort(raw, 1)[:, -1] - np.sort(raw, 1)[:, -2]
    t = Table(title=f"head on int8 token states, near-ties reread on fp32 states, vs the head on fp32 states: "
                    f"{len(pairs):,} (text, entity) pairs of the {len(multi):,} multi-entity items in {len(texts):,} "
                    f"texts (bench/texts.py mix, seed 11); {exact.mean():.1%} of pairs already on fp32 states "
                    f"(the item recheck)")
    for col in ("margin", "pairs reread", "texts re-encoded (fp32)", "agreement with fp32"):
        t.add_column(col, justify="right")
    for m in (0.0, 0.02, 0.05, 0.1, 0.15, INT8_RECHECK_MARGIN, 0.3):
        redo = (low < m) & ~exact
        again = {tx for (tx, _), r in zip(pairs, redo) if r}
        agree = (np.where(redo, ref, raw.argmax(1)) == ref).mean()
        t.add_row(f"{m:.2f}" + (" (shipped)" if m == INT8_RECHECK_MARGIN else ""), f"{redo.mean():.3f}",
                  f"{len(again) / max(1, len(multi)):.3f}", f"{agree:.4f}")
    console.print(t)


def real_csv(data_dir: Path, n: int, out: Path, seed: int = 5) -> Path:
    """n rows drawn from the shared Twitter Financial News CSVs (sentiment and topic), as one CSV."""
    rows = []
    for p in sorted(data_dir.glob("twitter_financial_news_*/*.csv")):
        with open(p, encoding="utf-8", newline="") as fh:
            rows += [r["text"] for r in csv.DictReader(fh)]
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerows([r] for r in rows)
    return out


def predict_table(data_dir: Path, n: int, rounds: int, console: Console, model: Path) -> None:
    """`finsent predict` (models.predict_file.predict_file, the shipped scorer: precision auto, ORT
    default threads) over n real tweets, with entities on and off, alternated `rounds` times on one
    warm scorer; wall and process CPU time of each run, best of the rounds."""
    import tempfile

    from models.predict_file import default_linker, predict_file
    from models.runtime import Scorer

    scorer = Scorer.from_artifact(model)
    linker = default_linker()
    with tempfile.TemporaryDirectory() as tmp:
        src = real_csv(data_dir, n, Path(tmp) / "texts.csv")
        predict_file(scorer, src, Path(tmp) / "warm.jsonl", linker=linker)  # warm-up: sessions, caches
        best = {"off": [float("inf")] * 2, "on": [float("inf")] * 2}
        for _ in range(rounds):
            for mode in ("off", "on"):
                w0, c0 = time.perf_counter(), time.process_time()
                predict_file(scorer, src, Path(tmp) / f"{mode}.jsonl", linker=linker if mode == "on" else False)
                w, c = time.perf_counter() - w0, time.process_time() - c0
                best[mode] = [min(best[mode][0], w), min(best[mode][1], c)]
    t = Table(title=f"finsent predict over {n:,} real tweets (twitter_financial_news_*), precision "
                    f"{scorer.precision}, best of {rounds} alternated runs")
    for col in ("entities", "texts/s (wall)", "texts/s (CPU)", "vs off (wall)", "vs off (CPU)"):
        t.add_column(col, justify="right")
    for mode in ("off", "on"):
        w, c = best[mode]
        t.add_row(mode, f"{n / w:,.1f}", f"{n / c:,.1f}", f"{best['off'][0] / w:.3f}", f"{best['off'][1] / c:.3f}")
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--data-dir", type=Path, default=get_settings().data_dir)
    ap.add_argument("--names", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=1500, help="two-entity items to build per built set")
    ap.add_argument("--only", choices=["linking", "sentiment", "cost", "int8", "predict"], default=None)
    ap.add_argument("--model", type=Path, default=None, help="artifact (default: the shipped one)")
    ap.add_argument("--predict-n", type=int, default=4000, help="real tweets for the predict table")
    ap.add_argument("--rounds", type=int, default=2, help="alternated on/off runs of the predict table")
    ap.add_argument("--cost-n", type=int, default=2000, help="texts for the CPU cost table")
    a = ap.parse_args()
    from models.runtime import DEFAULT_ARTIFACT

    a.model = a.model or DEFAULT_ARTIFACT
    console = Console(width=150)
    if a.only in (None, "linking"):
        linking_tables(a, console)
    if a.only in (None, "cost"):
        cost_table(a.data_dir, a.cost_n, console, a.model)
    if a.only in (None, "int8"):
        int8_table(a.data_dir, a.cost_n, console, a.model)
    if a.only in (None, "predict"):
        predict_table(a.data_dir, a.predict_n, a.rounds, console, a.model)
    if a.only in (None, "sentiment"):
        if (a.data_dir / "fiqa_2018_task1").exists():
            sentiment_table(a.data_dir, a.pairs, console, a.model)
        else:
            console.print(f"per-entity sentiment: skipped, {a.data_dir} holds no FiQA/SemEval/tweets")


def linking_tables(a, console: Console) -> None:
    texts = realistic_mix(a.data_dir, a.n)

    speed = Table(title=f"Linking speed: {len(texts):,} texts, one thread, best of 5 after a warm-up")
    for col in ("directory", "symbols", "names", "build s", "texts/s (wall)", "texts/s (CPU)", "µs/text (CPU)",
                "entities/text"):
        speed.add_column(col, justify="right" if col != "directory" else "left")
    default = Directory.default()
    for label, d in (("shipped", default), (f"shipped + synthetic to {a.names:,} names", padded(default, a.names))):
        t0 = time.perf_counter()
        linker = Linker(d)
        built = time.perf_counter() - t0
        wall, cpu, per_text = rate(linker, texts)
        speed.add_row(label, f"{len(d):,}", f"{d.n_names():,}", f"{built:.2f}", f"{wall:,.0f}", f"{cpu:,.0f}",
                      f"{1e6 / cpu:.1f}", f"{per_text:.2f}")
    console.print(speed)

    linker = Linker(default)
    quality = Table(title=f"Linking quality (directory {default.version})")
    for col in ("set", "items", "precision", "recall", "misses / false links"):
        quality.add_column(col)
    items = read_items(ROOT / "tests/data/entities_eval.jsonl")
    s = score(linker, items)
    negatives = [it for it in items if not it["expected"]]
    quality.add_row("tests/data/entities_eval.jsonl (hand-labelled)", f"{len(items)} ({len(negatives)} hard negatives)",
                    f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.fn} / {s.fp}")
    neg = score(linker, negatives)
    quality.add_row("  of which hard negatives only", str(len(negatives)), "-", "-", f"- / {neg.fp}")
    dropped = cashtag_dropped(default, linker, a.data_dir)
    if dropped:
        hit, total = dropped
        quality.add_row("shared tweets, cashtag removed, name kept", str(total), "-", f"{hit / total:.3f}",
                        f"{total - hit} / -")
    for label, (hit, total) in target_recall(linker, a.data_dir).items():
        quality.add_row(label, str(total), "-", f"{hit / total:.3f}", f"{total - hit} / -")
    console.print(quality)
    console.print("texts/s: Linker.link over the list (Python, one thread), by wall clock and by process CPU "
                  "time; precision/recall micro-averaged over (text, ticker) pairs. FiQA / SemEval targets: an "
                  "annotated company is found when a linked entity's span overlaps the target's (directory "
                  "coverage: a company the directory does not list is a miss).")


if __name__ == "__main__":
    main()
