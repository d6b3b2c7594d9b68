"""Experiment (not shipped): would a fine-tuned encoder read each entity better than the frozen one?

    python bench/entity_finetune.py --layers 2 --epochs 3 --out var/entity_finetune    # ~20 min on 2 cores

The shipped per-entity head (models/entity_sentiment.py) reads the token states of the item
encoder, which is frozen so that one encoder pass serves the item and its entities. Here the top
`--layers` transformer layers of a copy of that encoder are trained together with the head (from
the shipped head's weights) on the head's own data and splits (build_dataset: FiQA 2018,
SemEval-2017, single-entity tweets and two-entity pairs built from them), the epoch picked on
dev, and the held-out test split read the way the head's training report reads it (whole text,
no own-clause reading). Serving such a head would need those layers run again on every
multi-entity text (a second, partial encoder pass); docs/entities.md has the figures and why it
is not shipped. `--labelled-x K` repeats the FiQA / SemEval training items K times.

Checkpoints after each epoch into --out and resumes from there with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from models.artifact import DEFAULT_ARTIFACT, read_meta_file
    from models.data import default_data_dir
    from models.entity_head import load_head
    from models.entity_inputs import PAD_BUCKET, target_features
    from models.entity_sentiment import build_dataset, metrics
    from models.network import load_artifact
    from models.runtime import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="the shared data folder (default: FINSENT_DATA_DIR)")
    ap.add_argument("--layers", type=int, default=2, help="top encoder layers trained with the head")
    ap.add_argument("--epochs", type=int, default=3, help="0: read the shipped head on the test split")
    ap.add_argument("--lr", type=float, default=3e-5, help="encoder layers")
    ap.add_argument("--head-lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--labelled-x", type=int, default=1)
    ap.add_argument("--out", default="var/entity_finetune")
    args = ap.parse_args()
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(13)
    torch.manual_seed(13)
    artifact = Path(DEFAULT_ARTIFACT)
    meta = read_meta_file(artifact)
    sets, _ = build_dataset(Path(args.data or default_data_dir()), 13, 6000, 1500, 4000, "all")
    labelled = [i for i in sets["train"] if i.source.startswith(("fiqa", "semeval"))]
    sets["train"] += labelled * (args.labelled_x - 1)
    console.print({k: len(v) for k, v in sets.items()})
    model, _ = load_artifact(artifact)
    enc, head = model.encoder, load_head(artifact)
    enc.requires_grad_(False)
    for layer in enc.encoder.layer[len(enc.encoder.layer) - args.layers:]:
        layer.requires_grad_(True)
    tok = Tokenizer(artifact, int(meta["max_length"]), bool(meta.get("mask_urls", True)))
    encodings: dict = {}

    def forward(items):
        """The head's logits per item; each distinct text goes through the encoder once."""
        texts = sorted({i.text for i in items})
        row = {t: k for k, t in enumerate(texts)}
        miss = [t for t in texts if t not in encodings]
        encodings.update(zip(miss, tok.encodings(miss)))
        es = [encodings[t] for t in texts]
        width = max(len(e.ids) for e in es)
        ids, att = torch.zeros((len(texts), width), dtype=torch.long), torch.zeros((len(texts), width), dtype=torch.long)
        for k, e in enumerate(es):
            ids[k, :len(e.ids)], att[k, :len(e.ids)] = torch.tensor(e.ids), 1
        hidden = enc(input_ids=ids, attention_mask=att).last_hidden_state
        rows = [row[i.text] for i in items]
        tm = np.zeros((len(items), width), np.int64)
        dist = np.full((len(items), width), PAD_BUCKET, np.int64)
        for k, it in enumerate(items):
            e = es[row[it.text]]
            tm[k, :len(e.ids)], dist[k, :len(e.ids)] = target_features(e.offsets, [tuple(s) for s in it.spans],
                                                                      len(e.ids), it.text)
        return head(hidden[rows], att[rows], torch.from_numpy(tm), torch.from_numpy(dist))

    class NoItemLogits:  # metrics() also reports the item head's baseline, read elsewhere
        def __init__(self, items):
            self.index = {t: k for k, t in enumerate(sorted({i.text for i in items}))}
            self.item_logits = np.zeros((len(self.index), 3), np.float32)

    def evaluate(items):
        enc.eval()
        head.eval()
        with torch.inference_mode():
            probs = [torch.softmax(forward(items[s:s + 128]), -1).numpy() for s in range(0, len(items), 128)]
        return metrics(items, np.concatenate(probs), NoItemLogits(items))

    groups = [{"params": [q for q in enc.parameters() if q.requires_grad], "lr": args.lr},
              {"params": list(head.parameters()), "lr": args.head_lr}]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    per_epoch = math.ceil(len(sets["train"]) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[args.lr, args.head_lr],
                                                total_steps=max(1, args.epochs * per_epoch), pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    start, history, best = 0, [], -1.0
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["args"] == vars(args):
            enc.load_state_dict(state["enc"])
            head.load_state_dict(state["head"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start, history, best = state["epoch"], state["history"], state["best"]
            console.print(f"resumed after epoch {start}")
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=console) as progress:
        task = progress.add_task("train", total=args.epochs * per_epoch, completed=start * per_epoch)
        for epoch in range(start, args.epochs):
            t0, total = time.time(), 0.0
            order = sets["train"][:]
            random.Random(epoch).shuffle(order)
            enc.train()
            head.train()
            for s in range(0, len(order), args.batch):
                b = order[s:s + args.batch]
                loss = loss_fn(forward(b), torch.tensor([i.label for i in b]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(b)
                progress.advance(task)
            dev = evaluate(sets["dev"])
            history.append({"epoch": epoch + 1, "train_loss": round(total / len(order), 4),
                            "seconds": round(time.time() - t0), "dev_accuracy": dev["all"]["accuracy"],
                            "dev_opposite_both_right": dev.get("tweet_pair_opposite", {}).get("both_right")})
            progress.console.print(history[-1])
            if dev["all"]["accuracy"] > best:
                best = dev["all"]["accuracy"]
                torch.save({"enc": enc.state_dict(), "head": head.state_dict()}, out / "best.pt")
            torch.save({"args": vars(args), "enc": enc.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "epoch": epoch + 1, "history": history, "best": best}, ckpt)
    shipped_test = evaluate(sets["test"]) if not history else None  # --epochs 0: the shipped head, this split
    if history:
        state = torch.load(out / "best.pt")
        enc.load_state_dict(state["enc"])
        head.load_state_dict(state["head"])
    test = shipped_test or evaluate(sets["test"])
    (out / "report.json").write_text(json.dumps({"args": vars(args), "history": history, "test": test}, indent=1) + "\n")
    # the shipped head's figures as its training report wrote them (the split moves with the directory:
    # `--epochs 0` reads the shipped head on today's split)
    shipped = json.loads((artifact / "entity_head.json").read_text())["test"]
    from rich.table import Table

    now = f"top {args.layers} layer(s) fine-tuned with it" if history else "shipped head on this split"
    table = Table(title=f"held-out test split, whole text: shipped head (its training report) vs {now}")
    for c in ("set", "n", "shipped head (report)", "fine-tuned" if history else "shipped head (now)"):
        table.add_column(c)
    for k, v in test.items():
        if k == "tweet_pair_opposite":
            table.add_row("tweet pairs of opposite tone, both right", str(v["pairs"]),
                          f"{shipped[k]['both_right']:.3f}", f"{v['both_right']:.3f}")
        else:
            table.add_row(k, str(v["n"]), f"{shipped.get(k, {}).get('accuracy', float('nan')):.3f}", f"{v['accuracy']:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
