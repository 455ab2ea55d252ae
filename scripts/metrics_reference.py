#!/usr/bin/env python3
"""Independent reference for the bpgg-metrics crate (golden values and a speed baseline).

Pixel AUROC, pixel AP and F1-max come from scikit-learn (`roc_auc_score`,
`average_precision_score`, `precision_recall_curve`); AUPRO is written here following the
MVTec AD reference evaluation (`generic_util.py`: `compute_pro` + `trapezoid`,
`evaluate_experiment.py`: integrate to the FPR limit, divide by it), with ground-truth regions
from `scipy.ndimage.label` and a 3x3 structure of ones (8-connectivity). Nothing here imports
or mirrors the Rust code except the tiny input generator below, which both sides implement so
that only expected numbers need to be committed.

Requirements: python3 -m pip install numpy scipy scikit-learn

Modes
-----
golden
    python3 scripts/metrics_reference.py golden [--out crates/bpgg-metrics/tests/support/golden_values.rs]

    Regenerates the committed golden values (a Rust source file, read by
    crates/bpgg-metrics/tests/golden.rs). Inputs are not stored: each case is a small spec
    (`CaseSpec`) expanded into maps and masks by the generator described under "Generator".

bench
    python3 scripts/metrics_reference.py bench --dir DIR [--repeats R] [--fpr-limit 0.3]

    Reads a test set from DIR, computes pixel AUROC, pixel AP, F1-max (+ threshold),
    AUPRO(fpr-limit) and image AUROC (image score = max of the map) R times, and prints one JSON
    object on stdout:

        {"median_s": <median wall time of one full evaluation, seconds>,
         "repeats": R, "n_maps": N, "n_pixels": N*H*W,
         "timings_s": {"pixel_auroc": .., "pixel_ap": .., "f1_max": .., "aupro": ..,
                       "image_auroc": ..},          # medians per metric
         "metrics": {"pixel_auroc": .., "aupro": .., "pixel_ap": .., "f1_max": ..,
                     "f1_threshold": .., "image_auroc": <float or null>}}

    image_auroc is null when all images share one label.

Bench input format (DIR)
------------------------
    shape.json  {"n": N, "height": H, "width": W}      (JSON object, these three integer keys)
    maps.f32    N*H*W float32, little-endian, no header; map-major then row-major:
                value of map i, row y, column x at index (i*H + y)*W + x
    masks.u8    N*H*W bytes, same order; 0 = normal pixel, any other value = defect pixel
    labels.u8   optional, N bytes; 0 = normal image, other = defective image. When absent an
                image is defective iff its mask has a defect pixel.

Generator (shared with crates/bpgg-metrics/tests/support/cases.rs)
-------------------------------------------------------------------
PRNG: splitmix64, all arithmetic modulo 2**64:
    state += 0x9E3779B97F4A7C15; z = state
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    return z ^ (z >> 31)
below(n) = next() % n. The state starts at `seed`. For each map, in order, draws are:
    1. defective = below(100) < defect_pct
    2. offset    = below(max_offset + 1)                (added to every score of the map)
    3. if defective:
         blobs = 1 + below(max_blobs) if max_blobs > 0 else 0
         per blob: cx = below(W), cy = below(H), rx = below(max_radius + 1), ry = below(max_radius + 1);
                   pixel (x, y) with |x-cx| <= rx, |y-cy| <= ry, inside the image, is set when
                   (2(x-cx))^2 (2ry+1)^2 + (2(y-cy))^2 (2rx+1)^2 <= (2rx+1)^2 (2ry+1)^2
         per diagonal pair (diagonal_pairs of them): x = below(W - 1), y = below(H - 1);
                   set (x, y) and (x + 1, y + 1)
    4. per pixel, row-major: level = below(2**bits) + offset + (signal if mask else 0);
       score = float32(level) * 2**-bits (exact: level < 2**24 for every case)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

MASK64 = (1 << 64) - 1
DEFAULT_FPR_LIMIT = 0.3
GOLDEN_FPR_LIMITS = (0.3, 0.05, 1.0)
DEFAULT_GOLDEN_OUT = "crates/bpgg-metrics/tests/support/golden_values.rs"


# ----------------------------------------------------------------------------- generator


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return self.next() % n


@dataclass(frozen=True)
class CaseSpec:
    name: str
    seed: int
    n_maps: int
    width: int
    height: int
    defect_pct: int
    max_blobs: int
    max_radius: int
    diagonal_pairs: int
    bits: int
    signal: int
    max_offset: int


def generate(spec: CaseSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps (N, H, W) float32, masks (N, H, W) bool, score levels (N, H, W) int64."""
    rng = SplitMix64(spec.seed)
    w, h = spec.width, spec.height
    levels = np.zeros((spec.n_maps, h, w), dtype=np.int64)
    masks = np.zeros((spec.n_maps, h, w), dtype=bool)
    for i in range(spec.n_maps):
        defective = rng.below(100) < spec.defect_pct
        offset = rng.below(spec.max_offset + 1)
        mask = masks[i]
        if defective:
            blobs = 1 + rng.below(spec.max_blobs) if spec.max_blobs > 0 else 0
            for _ in range(blobs):
                cx, cy = rng.below(w), rng.below(h)
                rx, ry = rng.below(spec.max_radius + 1), rng.below(spec.max_radius + 1)
                ax, ay = 2 * rx + 1, 2 * ry + 1
                for y in range(max(cy - ry, 0), min(cy + ry, h - 1) + 1):
                    for x in range(max(cx - rx, 0), min(cx + rx, w - 1) + 1):
                        dx, dy = 2 * (x - cx), 2 * (y - cy)
                        if dx * dx * ay * ay + dy * dy * ax * ax <= ax * ax * ay * ay:
                            mask[y, x] = True
            for _ in range(spec.diagonal_pairs):
                x, y = rng.below(w - 1), rng.below(h - 1)
                mask[y, x] = True
                mask[y + 1, x + 1] = True
        span = 1 << spec.bits
        for y in range(h):
            for x in range(w):
                levels[i, y, x] = rng.below(span) + offset + (spec.signal if mask[y, x] else 0)
    assert levels.max() < (1 << 24), "levels must be exact in float32"
    maps = levels.astype(np.float32) * np.float32(2.0 ** -spec.bits)
    return maps, masks, levels


# These specs are mirrored in the generated Rust file; edit here and regenerate.
CASES = [
    CaseSpec("small_continuous", 1, 6, 16, 12, 50, 3, 3, 0, 20, 1 << 18, 1 << 18),
    CaseSpec("heavy_ties", 2, 10, 20, 20, 60, 3, 4, 0, 3, 2, 1),
    CaseSpec("binary_scores", 3, 8, 16, 16, 50, 2, 3, 0, 1, 1, 0),
    CaseSpec("one_pixel_regions", 4, 8, 24, 24, 75, 6, 0, 0, 12, 1 << 10, 1 << 9),
    CaseSpec("diagonal_pairs", 5, 8, 24, 24, 75, 0, 0, 6, 10, 1 << 8, 0),
    CaseSpec("mostly_normal", 6, 30, 32, 32, 20, 4, 5, 1, 16, 1 << 13, 1 << 14),
    CaseSpec("weak_signal", 7, 12, 32, 24, 60, 3, 6, 0, 16, 1 << 12, 0),
    CaseSpec("many_maps", 8, 100, 64, 64, 50, 3, 8, 2, 16, 1 << 14, 1 << 13),
]


# ----------------------------------------------------------------------------- reference


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components, as the MVTec AD evaluation labels ground truth."""
    return ndimage.label(mask, structure=np.ones((3, 3), dtype=int))


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) with one point per distinct score plus (0, 0) and (1, 1), MVTec AD method."""
    fp_change = np.zeros(maps.shape, dtype=np.float64)
    pro_change = np.zeros(maps.shape, dtype=np.float64)
    num_ok = 0
    num_regions = 0
    for i, mask in enumerate(masks):
        labeled, count = label_regions(mask)
        ok = labeled == 0
        num_ok += int(ok.sum())
        num_regions += count
        fp_change[i][ok] = 1.0
        sizes = np.bincount(labeled.ravel(), minlength=count + 1).astype(np.float64)
        weights = np.zeros(count + 1)
        weights[1:] = 1.0 / sizes[1:]
        pro_change[i] = np.where(ok, 0.0, weights[labeled])
    scores = maps.ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    fprs = np.cumsum(fp_change.ravel()[order]) / num_ok
    pros = np.cumsum(pro_change.ravel()[order]) / num_regions
    # Keep the last point of every run of equal scores: it holds all changes of that threshold.
    keep = np.append(np.diff(scores) != 0, True)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0]))


def trapezoid(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) for x <= x_max, y(x_max) interpolated (MVTec AD `trapezoid`)."""
    correction = 0.0
    if x_max not in x:
        ins = int(np.searchsorted(x, x_max, side="right"))
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    fpr, pro = pro_curve(maps, masks)
    return trapezoid(fpr, pro, fpr_limit) / fpr_limit


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def image_auroc(maps: np.ndarray, image_labels: np.ndarray) -> float | None:
    if image_labels.all() or not image_labels.any():
        return None
    return float(roc_auc_score(image_labels, maps.reshape(len(maps), -1).max(axis=1)))


# ----------------------------------------------------------------------------- golden


def rust_f64(value: float) -> str:
    return repr(float(value)) if np.isfinite(value) else "f64::NAN"


def golden(out: Path) -> None:
    lines = [
        "// @generated by `python3 scripts/metrics_reference.py golden`; do not edit.",
        "// Inputs come from the generator in tests/support/cases.rs (mirrored in the script);",
        "// expected values from scikit-learn and the script's MVTec-AD-method AUPRO.",
        "",
        "use super::cases::{CaseSpec, Expected, GoldenCase};",
        "",
        f"/// FPR limits of `Expected::aupro`, in order.",
        f"pub const GOLDEN_FPR_LIMITS: [f64; {len(GOLDEN_FPR_LIMITS)}] = "
        f"[{', '.join(rust_f64(l) for l in GOLDEN_FPR_LIMITS)}];",
        "",
        "pub const GOLDEN_CASES: &[GoldenCase] = &[",
    ]
    for spec in CASES:
        maps, masks, levels = generate(spec)
        labels, scores = masks.ravel(), maps.ravel()
        regions = sum(label_regions(m)[1] for m in masks)
        f1, f1_threshold = f1_max(labels, scores)
        image = image_auroc(maps, masks.reshape(len(masks), -1).any(axis=1))
        expected = {
            "pixels": labels.size,
            "defect_pixels": int(labels.sum()),
            "regions": int(regions),
            "level_sum": int(levels.sum()),
            "pixel_auroc": float(roc_auc_score(labels, scores)),
            "pixel_ap": float(average_precision_score(labels, scores)),
            "f1_max": f1,
            "f1_threshold": f1_threshold,
            "aupro": [aupro(maps, masks, limit) for limit in GOLDEN_FPR_LIMITS],
            "image_auroc": image,
        }
        print(f"{spec.name}: {expected}", file=sys.stderr)
        image_text = "None" if image is None else f"Some({rust_f64(image)})"
        lines += [
            "    GoldenCase {",
            "        spec: CaseSpec {",
            f'            name: "{spec.name}",',
            f"            seed: {spec.seed},",
            f"            n_maps: {spec.n_maps},",
            f"            width: {spec.width},",
            f"            height: {spec.height},",
            f"            defect_pct: {spec.defect_pct},",
            f"            max_blobs: {spec.max_blobs},",
            f"            max_radius: {spec.max_radius},",
            f"            diagonal_pairs: {spec.diagonal_pairs},",
            f"            bits: {spec.bits},",
            f"            signal: {spec.signal},",
            f"            max_offset: {spec.max_offset},",
            "        },",
            "        expected: Expected {",
            f"            pixels: {expected['pixels']},",
            f"            defect_pixels: {expected['defect_pixels']},",
            f"            regions: {expected['regions']},",
            f"            level_sum: {expected['level_sum']},",
            f"            pixel_auroc: {rust_f64(expected['pixel_auroc'])},",
            f"            pixel_ap: {rust_f64(expected['pixel_ap'])},",
            f"            f1_max: {rust_f64(expected['f1_max'])},",
            f"            f1_threshold: {rust_f64(expected['f1_threshold'])},",
            f"            aupro: [{', '.join(rust_f64(v) for v in expected['aupro'])}],",
            f"            image_auroc: {image_text},",
            "        },",
            "    },",
        ]
    lines.append("];")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)


# ----------------------------------------------------------------------------- bench


def read_bench_dir(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = json.loads((directory / "shape.json").read_text())
    n, h, w = int(shape["n"]), int(shape["height"]), int(shape["width"])
    maps = np.fromfile(directory / "maps.f32", dtype="<f4")
    masks = np.fromfile(directory / "masks.u8", dtype=np.uint8)
    if maps.size != n * h * w or masks.size != n * h * w:
        raise SystemExit(
            f"{directory}: expected {n}*{h}*{w} = {n * h * w} values, "
            f"got {maps.size} in maps.f32 and {masks.size} in masks.u8"
        )
    maps = maps.astype(np.float32).reshape(n, h, w)
    masks = (masks != 0).reshape(n, h, w)
    labels_path = directory / "labels.u8"
    if labels_path.exists():
        image_labels = np.fromfile(labels_path, dtype=np.uint8) != 0
        if image_labels.size != n:
            raise SystemExit(f"{labels_path}: expected {n} labels, got {image_labels.size}")
    else:
        image_labels = masks.reshape(n, -1).any(axis=1)
    return maps, masks, image_labels


def bench(directory: Path, repeats: int, fpr_limit: float) -> None:
    maps, masks, image_labels = read_bench_dir(directory)
    labels, scores = masks.ravel(), maps.ravel()
    steps = {
        "pixel_auroc": lambda: float(roc_auc_score(labels, scores)),
        "pixel_ap": lambda: float(average_precision_score(labels, scores)),
        "f1_max": lambda: f1_max(labels, scores),
        "aupro": lambda: aupro(maps, masks, fpr_limit),
        "image_auroc": lambda: image_auroc(maps, image_labels),
    }
    totals, per_step = [], {name: [] for name in steps}
    results = {}
    for _ in range(repeats):
        start = time.perf_counter()
        for name, step in steps.items():
            t0 = time.perf_counter()
            results[name] = step()
            per_step[name].append(time.perf_counter() - t0)
        totals.append(time.perf_counter() - start)
    f1, f1_threshold = results["f1_max"]
    print(
        json.dumps(
            {
                "median_s": statistics.median(totals),
                "repeats": repeats,
                "n_maps": int(maps.shape[0]),
                "n_pixels": int(scores.size),
                "timings_s": {name: statistics.median(t) for name, t in per_step.items()},
                "metrics": {
                    "pixel_auroc": results["pixel_auroc"],
                    "aupro": results["aupro"],
                    "pixel_ap": results["pixel_ap"],
                    "f1_max": f1,
                    "f1_threshold": f1_threshold,
                    "image_auroc": results["image_auroc"],
                },
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    golden_parser = modes.add_parser("golden", help="regenerate the committed golden values")
    golden_parser.add_argument("--out", type=Path, default=Path(DEFAULT_GOLDEN_OUT))
    bench_parser = modes.add_parser("bench", help="time the reference on a test set in DIR")
    bench_parser.add_argument("--dir", type=Path, required=True)
    bench_parser.add_argument("--repeats", type=int, default=3)
    bench_parser.add_argument("--fpr-limit", type=float, default=DEFAULT_FPR_LIMIT)
    args = parser.parse_args()
    if args.mode == "golden":
        golden(args.out)
    else:
        bench(args.dir, max(args.repeats, 1), args.fpr_limit)


if __name__ == "__main__":
    main()
