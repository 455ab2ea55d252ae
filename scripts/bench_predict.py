#!/usr/bin/env python3
"""PyTorch reference timing for `bpgg bench predict` (run by it; usable on its own).

Usage:
    python3 scripts/bench_predict.py --weights LITE0.safetensors --prototypes P.safetensors \
        --images LIST.txt [--batch 8] [--size 256] [--tau 20] [--sigma 4] [--truncate 4] \
        [--repeats 5] [--warmup 1] [--threads 2] [--check-map FIRST_MAP.f32] \
        [--device cpu|cuda:N]

Does, per batch of the listed image files, the work `bpgg predict` does per image:
- decode with PIL, convert to RGB, resize to SIZE x SIZE (PIL bilinear, antialiased like the
  `image` crate's triangle filter), stack as float32 NCHW in 0..255;
- EfficientNet-Lite0 trunk (`EfficientNetLite0Trunk` of scripts/bench_backbone.py, built from
  the same safetensors) to blocks 4 and 10 (strides 8 and 16);
- combine at stride 8: block 10 upsampled bilinearly (align_corners=False), concatenated
  with block 4, L2-normalised per pixel;
- scoring: tau * max cosine to the normal and to the defect prototypes (the rows of `normal`
  and `defect` in P.safetensors, fitted by bpgg), two-class softmax -> defect probability;
- the map: bilinear upsampling to SIZE x SIZE and a Gaussian blur (sigma px, radius
  round(truncate * sigma), scipy "reflect" borders), both folded into one matrix per axis and
  applied as two matmuls, as bpgg does;
- the maps back in host memory (as bpgg's are), which on a GPU (`--device cuda:N`: network,
  scoring and map on the GPU, decoding on the CPU) also waits for the GPU.

With --check-map, the largest absolute difference between the first image's map and the one
bpgg wrote (raw little-endian float32, SIZE x SIZE) is reported.

Prints one JSON object on stdout:
    {"images": N, "batch": B, "threads": T, "torch": "<version>", "median_s": ..,
     "min_s": .. (seconds per pass over all images), "timings_s": [..],
     "peak_rss_kib": .. (getrusage ru_maxrss), "map_max_abs_diff": .. or null}

Requirements: python3 -m pip install torch safetensors pillow numpy
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_backbone import EfficientNetLite0Trunk  # noqa: E402

NORM_EPS = 1e-12


def bilinear_matrix(in_len: int, out_len: int) -> np.ndarray:
    """(out, in) bilinear resampling, PyTorch align_corners=False."""
    m = np.zeros((out_len, in_len))
    scale = in_len / out_len
    for dst in range(out_len):
        src = max((dst + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), in_len - 1)
        i1 = min(i0 + 1, in_len - 1)
        frac = min(max(src - i0, 0.0), 1.0)
        m[dst, i0] += 1.0 - frac
        m[dst, i1] += frac
    return m


def gaussian_matrix(length: int, sigma: float, truncate: float) -> np.ndarray:
    """(len, len) Gaussian blur with half-sample symmetric ("reflect") borders."""
    if sigma <= 0:
        return np.eye(length)
    radius = int(truncate * sigma + 0.5)
    d = np.arange(-radius, radius + 1)
    kernel = np.exp(-(d * d) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    m = np.zeros((length, length))
    period = 2 * length
    for i in range(length):
        for j, k in enumerate(kernel):
            src = (i + j - radius) % period
            if src >= length:
                src = period - 1 - src
            m[i, src] += k
    return m


class Predictor:
    """Images (PIL) to anomaly maps, the way bpgg's FittedModel::predict computes them."""

    def __init__(self, args: argparse.Namespace):
        self.device = torch.device(args.device)
        self.trunk = EfficientNetLite0Trunk(load_file(args.weights)).eval().to(self.device)
        bank = load_file(args.prototypes)
        self.normal = F.normalize(bank["normal"].float(), dim=1, eps=NORM_EPS).to(self.device)
        self.defect = F.normalize(bank["defect"].float(), dim=1, eps=NORM_EPS).to(self.device)
        self.size, self.tau = args.size, args.tau
        self.sigma, self.truncate = args.sigma, args.truncate
        self.axis = None  # (rows, cols) matrices, built for the first feature grid

    def maps(self, images: list[Image.Image]) -> torch.Tensor:
        s = self.size
        batch = np.stack([np.asarray(i.resize((s, s), Image.BILINEAR), dtype=np.float32)
                          for i in images])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self.device)
        fine, coarse = self.trunk(x)
        h, w = fine.shape[2:]
        coarse = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        feats = F.normalize(torch.cat([fine, coarse], 1), dim=1, eps=NORM_EPS)
        q = feats.flatten(2)  # (b, C, h*w)
        normal = torch.einsum("kc,bcp->bkp", self.normal, q).amax(1)
        defect = torch.einsum("kc,bcp->bkp", self.defect, q).amax(1)
        prob = torch.sigmoid(self.tau * (defect - normal)).view(-1, h, w)
        if self.axis is None:
            rows = gaussian_matrix(s, self.sigma, self.truncate) @ bilinear_matrix(h, s)
            cols = gaussian_matrix(s, self.sigma, self.truncate) @ bilinear_matrix(w, s)
            self.axis = (torch.from_numpy(rows).float().to(self.device),
                         torch.from_numpy(cols).float().to(self.device))
        rows, cols = self.axis
        return (rows @ prob @ cols.T).cpu()  # (b, s, s)


def run_pass(predictor: Predictor, files: list[str], batch: int) -> torch.Tensor:
    first = None
    for start in range(0, len(files), batch):
        images = [Image.open(f).convert("RGB") for f in files[start:start + batch]]
        maps = predictor.maps(images)
        if first is None:
            first = maps[0]
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--prototypes", required=True)
    parser.add_argument("--images", required=True, help="text file, one image path per line")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tau", type=float, default=20.0)
    parser.add_argument("--sigma", type=float, default=4.0)
    parser.add_argument("--truncate", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check-map", help="bpgg's first map, raw float32 SIZE x SIZE")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.images) as f:
        files = [line.strip() for line in f if line.strip()]
    predictor = Predictor(args)
    timings = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            run_pass(predictor, files, args.batch)
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            first = run_pass(predictor, files, args.batch)
            timings.append(time.perf_counter() - start)
    diff = None
    if args.check_map:
        ours = torch.from_numpy(np.fromfile(args.check_map, dtype="<f4").copy())
        diff = float((ours.view_as(first) - first).abs().max())
    print(json.dumps({
        "images": len(files), "batch": args.batch, "threads": torch.get_num_threads(),
        "device": args.device,
        "torch": torch.__version__,
        "median_s": statistics.median(timings), "min_s": min(timings), "timings_s": timings,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "map_max_abs_diff": diff,
    }))


if __name__ == "__main__":
    main()
