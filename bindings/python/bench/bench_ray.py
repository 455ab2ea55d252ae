"""Throughput of `bpgg.ray.predict_dataset` with 1 and 2 workers beside `bpgg predict` on the
same images, and the package's overhead over the library call (numpy in and out).

    python bindings/python/bench/bench_ray.py --cli target/release/bpgg [--images 200]

Images: the test images of ../shared/data/magnetic_tile when present (gray PNGs of various
sizes), else synthetic 256x256 PNGs. Model: hybrid, fitted by the package on two crack images
with their masks and three train/good images (synthetic supports without the data set), at the
default 256 px with the embedded EfficientNet-Lite0.

Timed, per repeat, in turn (so that a busy machine slows every side alike):
  - cli:      `bpgg --quiet predict` as a subprocess: load the model, decode, score, write
              map (TIFF), mask and overlay PNGs and results.jsonl for every image;
  - ray-1:    predict_dataset(concurrency=1, num_cpus=2) on a dataset of paths, maps written
              to an output folder, from the call to the last row (actor start and model load
              included; `ray.init` not);
  - ray-2:    the same with concurrency=2, num_cpus=1.
Then the overhead: what `Model.predict` adds to the library call, timed inside the extension on
64 decoded images in batches of 8 (`Model._time_predict_parts`: numpy in, library call, maps
out), median over at least 5 passes, with `Model.predict` timed from Python beside it.
Reports medians over the repeats and the images/s they give.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

import bpgg

REPO = Path(__file__).resolve().parents[3]


def images_and_model(data: Path, count: int, tmp: Path) -> tuple:
    root = data / "magnetic_tile"
    if (root / "test").is_dir():
        tests = sorted(root.glob("test/*/*.png"))
        # Spread over every type, in a fixed order.
        step = max(1, len(tests) // count)
        paths = tests[::step][:count]
        cracks = sorted((root / "test" / "crack").glob("*.png"))[:2]
        defects = [bpgg.read_image(p) for p in cracks]
        masks = [
            bpgg.read_image(root / "ground_truth" / "crack" / f"{p.stem}_mask.png")[..., 0]
            for p in cracks
        ]
        normals = [bpgg.read_image(p) for p in sorted(root.glob("train/good/*.png"))[:3]]
        source = f"{len(paths)} magnetic_tile test images"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import add_defect, texture, write_png

        rng = np.random.default_rng(0)
        paths = []
        for i in range(count):
            paths.append(tmp / "images" / f"{i:04}.png")
            write_png(paths[-1], texture(rng, 256, 256))
        pairs = [add_defect(rng, texture(rng, 256, 256), side=24) for _ in range(2)]
        defects = [p[0] for p in pairs]
        masks = [p[1] for p in pairs]
        normals = [texture(rng, 256, 256) for _ in range(3)]
        source = f"{count} synthetic 256x256 images (no data set at {root})"
    model = bpgg.Model.fit(defects, masks, normals)
    return [str(p) for p in paths], model, source


def time_cli(cli: Path, model_path: Path, paths: List[str], out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(cli), "--quiet", "predict", "--model", str(model_path), "--output", str(out), *paths],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def time_ray(model: bpgg.Model, paths: List[str], workers: int, cpus: int, out: Path) -> float:
    import ray.data

    import bpgg.ray

    ds = ray.data.from_items([{"path": p} for p in paths])
    start = time.perf_counter()
    rows = bpgg.ray.predict_dataset(
        ds, model, batch_size=8, concurrency=workers, num_cpus=cpus / workers, output_dir=out
    ).take_all()
    seconds = time.perf_counter() - start
    assert len(rows) == len(paths)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cli", type=Path, default=REPO / "target" / "release" / "bpgg")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import ray
    import ray.data

    tmp = Path(tempfile.mkdtemp(prefix="bpgg-bench-ray-"))
    paths, model, source = images_and_model(args.data, args.images, tmp)
    model_path = tmp / "model.bpgg"
    model.save(model_path)
    print(f"{source}; model {model!r}; cli {args.cli}; load average {os.getloadavg()}")

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    sides = {
        "cli": lambda i: time_cli(args.cli, model_path, paths, tmp / f"cli{i}"),
        "ray-1": lambda i: time_ray(model, paths, 1, args.cpus, tmp / f"ray1-{i}"),
        "ray-2": lambda i: time_ray(model, paths, 2, args.cpus, tmp / f"ray2-{i}"),
    }
    for side in sides.values():  # warm-up: page cache, Ray worker pool
        side("warm")
    times: Dict[str, List[float]] = {name: [] for name in sides}
    for i in range(args.repeats):
        for name, side in sides.items():
            times[name].append(side(i))
    ray.shutdown()

    # The package's overhead: numpy in and maps out, around the library call, timed inside the
    # extension; and Model.predict as Python sees it, for context.
    decoded = [bpgg.read_image(p) for p in paths[:64]]
    batches = [decoded[i : i + 8] for i in range(0, len(decoded), 8)]
    passes = []
    for _ in range(max(5, args.repeats)):
        parts = np.zeros(4)
        for b in batches:
            start = time.perf_counter()
            model.predict(b)
            parts[3] += time.perf_counter() - start
            parts[:3] += model._time_predict_parts(b, 1)[0]
        passes.append(parts)
    convert_in, library, convert_out, python = np.median(np.array(passes), axis=0)
    overhead = convert_in + convert_out

    n = len(paths)
    results = {
        "images": n,
        "source": source,
        "repeats": args.repeats,
        "load_average": os.getloadavg(),
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "images_per_s": {k: n / statistics.median(v) for k, v in times.items()},
        "overhead": {
            "images": len(decoded),
            "numpy_in_ms_per_image": 1e3 * convert_in / len(decoded),
            "library_ms_per_image": 1e3 * library / len(decoded),
            "maps_out_ms_per_image": 1e3 * convert_out / len(decoded),
            "overhead_share": overhead / library,
            "model_predict_ms_per_image": 1e3 * python / len(decoded),
        },
    }
    print(f"{'side':8} {'median s':>9} {'images/s':>9} {'vs cli':>7}")
    for name in sides:
        s = results["median_s"][name]
        ratio = results["median_s"]["cli"] / s
        print(f"{name:8} {s:9.2f} {n / s:9.1f} {ratio:7.2f}")
    o = results["overhead"]
    print(
        f"per image, median of passes over {o['images']} images in batches of 8: numpy in "
        f"{o['numpy_in_ms_per_image']:.4f} ms, library call {o['library_ms_per_image']:.2f} ms, "
        f"maps out {o['maps_out_ms_per_image']:.4f} ms: overhead "
        f"{100 * o['overhead_share']:.3f}% of the library call; Model.predict as Python times "
        f"it {o['model_predict_ms_per_image']:.2f} ms"
    )
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
