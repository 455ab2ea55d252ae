#!/usr/bin/env python3
"""PyTorch reference timing for `bpgg bench knn` (run by it; usable on its own).

Usage:
    python3 scripts/bench_knn.py --bank M --queries Q --per IMAGES --channels C \
        [--repeats R] [--warmup W] [--threads T] [--chunk 4096] [--device cpu|cuda:N]

Times the exact nearest-neighbour search of Q unit query rows in a bank of M unit rows of C
channels, as PatchCore-style code does it in PyTorch: per block of `--chunk` query rows and
bank rows, `queries @ bank.T` and a running row maximum, then `1 - max` (the cosine distance
bpgg's `MemoryBank::score` returns). Random data: timings do not depend on the values. On a GPU
(`--device cuda:N`) the clock stops after `torch.cuda.synchronize`.

Prints one JSON object on stdout:
    {"bank": M, "queries": Q, "channels": C, "threads": T, "torch": "<version>",
     "median_s_per_image": .., "min_s_per_image": .. (per `--per` query images),
     "timings_s": [..]}

Requirements: python3 -m pip install torch
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def min_distance(queries: torch.Tensor, bank: torch.Tensor, chunk: int) -> torch.Tensor:
    """1 - max cosine of each unit query row to the unit bank rows, in blocks."""
    out = []
    for q0 in range(0, queries.shape[0], chunk):
        q = queries[q0:q0 + chunk]
        best = None
        for m0 in range(0, bank.shape[0], chunk):
            s = (q @ bank[m0:m0 + chunk].T).amax(dim=1)
            best = s if best is None else torch.maximum(best, s)
        out.append(best)
    return (1.0 - torch.cat(out)).clamp_min(0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, required=True)
    parser.add_argument("--queries", type=int, required=True)
    parser.add_argument("--per", type=int, default=1, help="query images in --queries rows")
    parser.add_argument("--channels", type=int, default=152)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    bank = F.normalize(torch.randn(args.bank, args.channels), dim=1).to(device)
    queries = F.normalize(torch.randn(args.queries, args.channels), dim=1).to(device)
    timings = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            min_distance(queries, bank, args.chunk)
        sync()
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            min_distance(queries, bank, args.chunk)
            sync()
            timings.append(time.perf_counter() - start)
    print(json.dumps({
        "bank": args.bank, "queries": args.queries, "channels": args.channels,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "median_s_per_image": statistics.median(timings) / args.per,
        "min_s_per_image": min(timings) / args.per,
        "timings_s": timings,
    }))


if __name__ == "__main__":
    main()
