"""Labelled-text readers: CSV (text,label), JSONL, the PhraseBank `sentence@label` format,
and (optional, needs internet and `datasets`) the same sets from the Hugging Face hub.

A source is described by a spec string `TASK:FORMAT:PATH[:MAP[:LICENCE]]`, for example
`sentiment:csv:../shared/data/twitter_financial_news_sentiment/sent_train.csv:twitter-sentiment`.

Licences are data: every file of the shared data folder has its licence in `KNOWN_LICENCES`
(keyed by its folder), a spec may name one (an SPDX-style id such as `MIT` or `CC-BY-NC-SA-3.0`),
and any other file counts as "unknown licence", which allows no commercial use. `SELECTIONS`
names the two training sets: `commercial` (the MIT Twitter sets only) and `nc` (adds
PhraseBank 50Agree). `allowed_use` derives what a model may be used for from the files that
trained it (its teacher's included); the model card prints that, never a hand-typed line.

Room: shared by serving and training (finsent predict reads its files with it). See models/README.md.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from models.labels import SENTIMENT, TOPIC, TWITTER_SENTIMENT_MAP, TWITTER_TOPIC_MAP, LabelSet

LABEL_MAPS: dict[str, dict[str, str]] = {
    "twitter-sentiment": TWITTER_SENTIMENT_MAP,
    "twitter-topic": TWITTER_TOPIC_MAP,
}
TASKS: dict[str, LabelSet] = {"topic": TOPIC, "sentiment": SENTIMENT}
FORMATS = ("csv", "jsonl", "phrasebank")
HUB_SETS = {
    "twitter-sentiment": ("zeroshot/twitter-financial-news-sentiment", "sentiment", "twitter-sentiment"),
    "twitter-topic": ("zeroshot/twitter-financial-news-topic", "topic", "twitter-topic"),
}


def default_data_dir() -> str:
    """FINSENT_DATA_DIR (core.settings.Settings.data_dir): where the shared training files are."""
    from core.settings import get_settings

    return str(get_settings().data_dir)


class DataError(ValueError):
    """A data file that cannot be read as asked; the message names the file and the problem."""


@dataclass(frozen=True)
class Example:
    text: str
    topic: int = -100  # -100 = no label for this head (masked in the loss)
    sentiment: int = -100
    source: str = ""


@dataclass(frozen=True)
class Licence:
    """A data licence and whether it lets a model trained on the data be used commercially."""

    id: str
    commercial: bool
    where: str = ""  # where the licence is stated


# SPDX-style ids a spec may name; anything else is refused (a typo must not grant commercial use)
LICENCES: dict[str, Licence] = {
    "MIT": Licence("MIT", True),
    "Apache-2.0": Licence("Apache-2.0", True),
    "BSD-3-Clause": Licence("BSD-3-Clause", True),
    "CC0-1.0": Licence("CC0-1.0", True),
    "CC-BY-4.0": Licence("CC-BY-4.0", True),
    "CC-BY-SA-4.0": Licence("CC-BY-SA-4.0", True),
    "CC-BY-NC-3.0": Licence("CC-BY-NC-3.0", False),
    "CC-BY-NC-4.0": Licence("CC-BY-NC-4.0", False),
    "CC-BY-NC-SA-3.0": Licence("CC-BY-NC-SA-3.0", False),
    "CC-BY-NC-SA-4.0": Licence("CC-BY-NC-SA-4.0", False),
    "unknown": Licence("unknown", False, "no licence stated: no permission to use commercially"),
}
# the shared data folder (FINSENT_DATA_DIR), per top folder; see its README.md
KNOWN_LICENCES: dict[str, Licence] = {
    "twitter_financial_news_sentiment": Licence("MIT", True, "dataset card, zeroshot/twitter-financial-news-sentiment"),
    "twitter_financial_news_topic": Licence("MIT", True, "dataset card, zeroshot/twitter-financial-news-topic"),
    "financial_phrasebank": Licence("CC-BY-NC-SA-3.0", False, "Malo et al. 2014, License.txt of the release"),
    "semeval2017_task5": Licence("CC-BY-NC-SA-4.0", False, "annotations; texts under the platforms' terms"),
    "fiqa_2018_task1": Licence("unknown", False, "no licence in the original release"),
}


def licence_of(path: Path, declared: str | None = None) -> Licence:
    """The licence a spec declares, else the shared folder's (by the file's parent folders), else unknown."""
    if declared:
        return LICENCES[declared]
    for folder in Path(path).parents:
        if folder.name in KNOWN_LICENCES:
            return KNOWN_LICENCES[folder.name]
    return LICENCES["unknown"]


@dataclass(frozen=True)
class SourceSpec:
    task: str
    format: str
    path: Path
    label_map: str | None = None
    licence_id: str | None = None  # None: from KNOWN_LICENCES by folder, else unknown

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        parts = spec.split(":")
        if len(parts) not in (3, 4, 5):
            raise DataError(f"source spec {spec!r} is not TASK:FORMAT:PATH[:MAP[:LICENCE]]")
        task, fmt, path = parts[:3]
        if task not in TASKS:
            raise DataError(f"unknown task {task!r} in {spec!r}; use one of {sorted(TASKS)}")
        if fmt not in FORMATS:
            raise DataError(f"unknown format {fmt!r} in {spec!r}; use one of {FORMATS}")
        label_map = (parts[3] if len(parts) >= 4 else "") or None
        if label_map is not None and label_map not in LABEL_MAPS:
            raise DataError(f"unknown label map {label_map!r}; known: {sorted(LABEL_MAPS)}")
        licence = (parts[4] if len(parts) == 5 else "") or None
        if licence is not None and licence not in LICENCES:
            raise DataError(f"unknown licence {licence!r} in {spec!r}; known: {', '.join(LICENCES)}")
        return cls(task, fmt, Path(path), label_map, licence)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def licence(self) -> Licence:
        return licence_of(self.path, self.licence_id)

    def record(self) -> dict:
        """What training.json / teacher.json keep of the file: where, what, its licence and its hash."""
        lic = self.licence
        return {"task": self.task, "format": self.format, "path": str(self.path), "label_map": self.label_map,
                "licence": lic.id, "commercial": lic.commercial, "licence_source": lic.where,
                "sha256": file_sha256(self.path)}


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(read_bytes(path)).hexdigest()


SELECTIONS: dict[str, tuple[str, ...]] = {
    "commercial": ("twitter-topic", "twitter-sentiment"),  # MIT only: the default model
    "nc": ("twitter-topic", "twitter-sentiment", "phrasebank-50"),  # + PhraseBank: non-commercial
}


def _shared_spec(d: Path, name: str, phrasebank: str = "Sentences_50Agree.txt") -> SourceSpec:
    return {
        "twitter-topic": SourceSpec("topic", "csv", d / "twitter_financial_news_topic/topic_train.csv", "twitter-topic"),
        "twitter-sentiment": SourceSpec("sentiment", "csv", d / "twitter_financial_news_sentiment/sent_train.csv",
                                        "twitter-sentiment"),
        "phrasebank-50": SourceSpec("sentiment", "phrasebank", d / "financial_phrasebank" / phrasebank),
    }[name]


def selection_sources(data_dir: Path, selection: str) -> list[SourceSpec]:
    """The shared files a named selection trains on (`commercial` or `nc`)."""
    if selection not in SELECTIONS:
        raise DataError(f"unknown data selection {selection!r}; use one of {sorted(SELECTIONS)}")
    return [_shared_spec(Path(data_dir), name) for name in SELECTIONS[selection]]


def default_sources(data_dir: Path, phrasebank: str = "Sentences_50Agree.txt") -> list[SourceSpec]:
    """The shared training files: Twitter topic + sentiment (MIT) and PhraseBank (CC BY-NC-SA)."""
    d = Path(data_dir)
    specs = [_shared_spec(d, "twitter-topic"), _shared_spec(d, "twitter-sentiment")]
    if phrasebank:
        specs.append(_shared_spec(d, "phrasebank-50", phrasebank))
    return specs


def allowed_use(records: list[dict]) -> dict:
    """What a model trained on these files (records as `SourceSpec.record` writes them, the
    teacher's included) may be used for: commercial only if every file allows it."""
    blocking = [r for r in records if not r.get("commercial", False)]
    if not records:
        return {"commercial": False, "statement": "non-commercial use only: the training data is not recorded",
                "blocking": []}
    if not blocking:
        ids = sorted({r["licence"] for r in records})
        return {"commercial": True, "blocking": [],
                "statement": f"commercial use allowed: every training file is under a licence that allows it "
                             f"({', '.join(ids)})"}
    why = "; ".join(f"{Path(r['path']).parent.name}/{Path(r['path']).name} ({r.get('licence', 'unknown')})"
                    for r in blocking)
    return {"commercial": False, "blocking": [r["path"] for r in blocking],
            "statement": f"non-commercial use only: trained on {why}"}


@contextmanager
def open_binary(path: Path):
    """The file opened for reading bytes, or a DataError naming the file and why it cannot be."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a data file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        yield f


def csv_records(reader, offset: int = 0):
    """The records of a csv.reader, each with the file line it starts on (a quoted field may span
    lines): (line, fields, None), or (line, None, the reader's error) for a record it refused (it
    goes on after it). Blank lines are not records. `offset`: lines of the file read before the
    reader's first (a header read apart)."""
    line = offset + reader.line_num
    while True:
        start = line + 1
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = offset + reader.line_num
            yield start, None, str(exc)
            continue
        line = offset + reader.line_num
        if rec:
            yield start, rec, None


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or a DataError naming the file and why it cannot be read."""
    with open_binary(path) as f:
        return f.read()


def read_text(path: Path) -> str:
    try:
        return read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None


def read_rows(path: Path, fmt: str, text_column: str = "text", label_column: str | None = "label",
              optional: tuple[str, ...] = ()) -> list[dict]:
    """Rows as dicts with 'text', (if label_column) 'label' and the `optional` columns a row has;
    errors name the file and row."""
    raw = read_text(Path(path))
    if fmt == "csv":
        rows = list(csv.DictReader(raw.splitlines()))
    elif fmt == "jsonl":
        rows = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
    elif fmt == "phrasebank":
        rows = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                text, sep, label = line.rpartition("@")
                if not sep:
                    raise DataError(f"{path}:{n}: no '@label' at the end of the line")
                rows.append({"text": text.strip(), "label": label.strip()})
        text_column, label_column = "text", "label"
    else:
        raise DataError(f"unknown format {fmt!r}")
    wanted = [text_column] + ([label_column] if label_column else [])
    for n, row in enumerate(rows, 1):
        missing = [c for c in wanted if not isinstance(row, dict) or c not in row]
        if missing:
            raise DataError(f"{path}: row {n} has no column {missing[0]!r}")
    return [{"text": r[text_column], **({"label": r[label_column]} if label_column else {}),
             **{c: r[c] for c in optional if c in r}} for r in rows]


def load_source(spec: SourceSpec) -> list[Example]:
    labels = TASKS[spec.task]
    remap = LABEL_MAPS.get(spec.label_map or "", {})
    out = []
    for n, row in enumerate(read_rows(spec.path, spec.format), 1):
        raw = str(row["label"]).strip()
        try:
            idx = labels.index(remap.get(raw, raw))
        except KeyError as exc:
            raise DataError(f"{spec.path}: row {n}: {exc.args[0]}") from None
        text = str(row["text"]).strip()
        if text:
            out.append(Example(text=text, source=spec.name, **{spec.task: idx}))
    return out


def load_hub(name: str, split: str = "train") -> list[Example]:
    """Load a named set from the Hugging Face hub (needs internet and `pip install datasets`)."""
    if name not in HUB_SETS:
        raise DataError(f"unknown hub set {name!r}; known: {sorted(HUB_SETS)}")
    from datasets import load_dataset  # optional dependency, only for users with internet

    repo, task, label_map = HUB_SETS[name]
    remap, labels = LABEL_MAPS[label_map], TASKS[task]
    ds = load_dataset(repo, split=split)
    return [
        Example(text=r["text"], source=repo, **{task: labels.index(remap[str(r["label"])])})
        for r in ds
        if str(r["text"]).strip()
    ]


def stratified_split(examples: list[Example], dev_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded split stratified by (source, label); every class keeps at least one training example."""
    import random

    rng = random.Random(seed)
    groups: dict[tuple, list[Example]] = {}
    for ex in examples:
        groups.setdefault((ex.source, ex.topic, ex.sentiment), []).append(ex)
    train, dev = [], []
    for key in sorted(groups, key=str):
        items = groups[key][:]
        rng.shuffle(items)
        n_dev = min(round(len(items) * dev_fraction), len(items) - 1)
        dev += items[:n_dev]
        train += items[n_dev:]
    rng.shuffle(train)
    return train, dev


def label_counts(examples: list[Example], task: str) -> Counter:
    return Counter(getattr(e, task) for e in examples if getattr(e, task) >= 0)
