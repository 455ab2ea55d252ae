#!/usr/bin/env python3
"""Summarises scripts/train_folds.sh: one markdown row per variant, the mean over the folds
(each fold: mean over its two unseen types and the seeds) of every metric, plus per-fold pixel
AP and AUPRO. Usage: scripts/summarize_folds.py OUT"""
import json
import pathlib
import sys

METRICS = ["pixel_auroc", "aupro", "pixel_ap", "f1_max", "image_auroc"]
out = pathlib.Path(sys.argv[1])
folds = ["blowhole+break", "break+crack", "crack+fray", "fray+uneven", "uneven+blowhole"]
print("| variant | folds | " + " | ".join(METRICS) + " |")
print("|---|---|" + "---:|" * len(METRICS))
per_fold = {}
for variant in ["baseline", "full", "no-reverse", "no-normal"]:
    rows = []
    for fold in folds:
        f = out / variant / fold / "eval.json"
        if f.exists():
            overall = json.loads(f.read_text())["shots"]["5"]["overall"]
            rows.append((fold, {m: overall[m]["mean"] for m in METRICS}))
    if not rows:
        continue
    per_fold[variant] = dict(rows)
    mean = {m: sum(r[m] for _, r in rows) / len(rows) for m in METRICS}
    print(f"| {variant} | {len(rows)} | " + " | ".join(f"{mean[m]:.3f}" for m in METRICS) + " |")
print()
print("| fold (unseen types) | " + " | ".join(f"{v} AP / AUPRO" for v in per_fold) + " |")
print("|---|" + "---|" * len(per_fold))
for fold in folds:
    cells = []
    for v, rows in per_fold.items():
        r = rows.get(fold)
        cells.append(f"{r['pixel_ap']:.3f} / {r['aupro']:.3f}" if r else "–")
    print(f"| {fold} | " + " | ".join(cells) + " |")
