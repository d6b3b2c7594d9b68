"""Classification metrics per head, numpy only (usable from the torch-free runtime):
accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix, and
expected calibration error (ECE, 15 equal-width confidence bins).

Room: shared by serving and training. See models/README.md.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def ece(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs((pred[sel] == y_true[sel]).mean() - conf[sel].mean())
    return float(total)


def head_report(probs: np.ndarray, y_true: np.ndarray, labels: list[str]) -> dict:
    """Metrics for one head; rows whose label is -100 are left out."""
    keep = y_true >= 0
    probs, y_true = probs[keep], y_true[keep]
    y_pred = probs.argmax(1)
    cm = confusion(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = cm.sum(1) > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "ece": ece(probs, y_true) if len(y_true) else float("nan"),
        "per_class": {
            lab: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                  "support": int(cm[i].sum())}
            for i, lab in enumerate(labels)
        },
        "confusion": cm.tolist(),
        "labels": list(labels),
    }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood (grid search; robust and fast)."""
    keep = y_true >= 0
    logits, y_true = logits[keep], y_true[keep]
    if not len(y_true):
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(10.0), 121))
    nll = [-np.log(softmax(logits, t)[np.arange(len(y_true)), y_true] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def markdown(report: dict, title: str) -> str:
    lines = [f"# {title}", ""]
    for head, r in report["heads"].items():
        lines += [f"## {head}", "", f"n={r['n']}  accuracy={r['accuracy']:.4f}  macro-F1={r['macro_f1']:.4f}  "
                  f"ECE={r['ece']:.4f}", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                  for k, v in r["per_class"].items()]
        labs = r["labels"]
        lines += ["", "Confusion (rows = true, columns = predicted, in class order above):", "", "```"]
        lines += [" ".join(f"{c:5d}" for c in row) + f"  {labs[i]}" for i, row in enumerate(r["confusion"])]
        lines += ["```", ""]
    for name, r in report.get("by_source", {}).items():
        lines.append(f"- {name}: accuracy={r['accuracy']:.4f} macro-F1={r['macro_f1']:.4f} (n={r['n']})")
    return "\n".join(lines) + "\n"
