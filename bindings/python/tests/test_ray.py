"""bpgg.ray.predict_dataset on a real local Ray cluster: every image scored exactly once with
the CLI's results, also when a worker is killed mid-run (Ray restarts it and retries its batch).

Needs `ray[data]`; skipped without it unless BPGG_REQUIRE_RAY=1 (CI), where its absence fails."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import bpgg
from conftest import SIZE, add_defect, cli_predict, make_supports, texture, write_png

if os.environ.get("BPGG_REQUIRE_RAY") == "1":
    import ray
    import ray.data
else:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[data]')")
    import ray.data

import bpgg.ray  # noqa: E402

#: Images scored in each run (the issue asks for at least 100).
IMAGES = 120
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2,
        object_store_memory=80 * 1024 * 1024,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def scene(cli: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    """A model, IMAGES PNG files of a few sizes (a third with a defect) and the CLI's results."""
    root = tmp_path_factory.mktemp("ray")
    s = make_supports(seed=21)
    model = bpgg.Model.fit(s.defects, s.masks, s.normals, size=SIZE)
    model.save(root / "model.bpgg")
    rng = np.random.default_rng(22)
    paths: List[str] = []
    for i in range(IMAGES):
        h, w = [(64, 64), (72, 56), (40, 88)][i % 3]
        image = texture(rng, h, w)
        if i % 3 == 0:
            image, _ = add_defect(rng, image)
        path = root / "images" / f"{i // 40}" / f"img{i:03}.png"
        write_png(path, image)
        paths.append(str(path))
    records = cli_predict(cli, root / "model.bpgg", root / "images", root / "cli")
    return {"root": root, "model": model, "paths": paths, "cli": records}


def check_against_cli(rows: List[dict], scene: Dict[str, object], maps: bool) -> None:
    paths: List[str] = scene["paths"]  # type: ignore[assignment]
    cli: Dict[str, dict] = scene["cli"]  # type: ignore[assignment]
    counts = Counter(r["path"] for r in rows)
    assert set(counts) == set(paths), "every image comes out"
    assert set(counts.values()) == {1}, "and exactly once"
    for r in rows:
        want = cli[r["path"]]
        assert abs(r["image_score"] - want["image_score"]) <= TOLERANCE
        assert bool(r["defective"]) == want["defective"]
        assert int(r["defect_area_px"]) == want["defect_area_px"]
        if maps:
            ours = bpgg.read_map(r["map_path"])
            assert np.abs(ours - bpgg.read_map(want["map"])).max() <= TOLERANCE
    assert sum(bool(r["defective"]) for r in rows) > 0  # the check is not all-normal


def test_every_image_once_with_the_clis_results(
    cluster: None, scene: Dict[str, object], tmp_path: Path
) -> None:
    ds = ray.data.from_items([{"path": p} for p in scene["paths"]])  # type: ignore[union-attr]
    out = tmp_path / "maps"
    rows = bpgg.ray.predict_dataset(
        ds, scene["root"] / "model.bpgg", batch_size=8, concurrency=2, output_dir=out
    ).take_all()
    check_against_cli(rows, scene, maps=True)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == IMAGES and not [n for n in names if n.startswith(".")]
    assert {Path(r["map_path"]).name for r in rows} == set(names)


def test_decoded_images_with_one_worker(cluster: None, scene: Dict[str, object]) -> None:
    paths: List[str] = scene["paths"][:30]  # type: ignore[index]
    items = [{"path": p, "image": bpgg.read_image(p)} for p in paths]
    rows = bpgg.ray.predict_dataset(
        ray.data.from_items(items), scene["model"], batch_size=4, concurrency=1, num_cpus=2
    ).take_all()
    cli: Dict[str, dict] = scene["cli"]  # type: ignore[assignment]
    assert sorted(r["path"] for r in rows) == sorted(paths)
    for r in rows:
        assert abs(r["image_score"] - cli[r["path"]]["image_score"]) <= TOLERANCE
    assert "map_path" not in rows[0]


def test_unreadable_images_are_recorded_or_raised(
    cluster: None, scene: Dict[str, object], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)
    paths = scene["paths"][:10] + [str(broken), str(tmp_path / "missing.png")]  # type: ignore
    ds = ray.data.from_items([{"path": p} for p in paths])
    rows = bpgg.ray.predict_dataset(ds, scene["model"], on_error="record").take_all()
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(paths)
    assert "broken.png" in by_path[str(broken)]["error"]
    assert np.isnan(by_path[str(broken)]["image_score"])
    assert "missing.png" in by_path[str(tmp_path / "missing.png")]["error"]
    assert all(by_path[p]["error"] is None for p in paths[:10])
    with pytest.raises(Exception, match="broken.png"):
        bpgg.ray.predict_dataset(ds, scene["model"]).take_all()


def bpgg_workers() -> List[int]:
    """Processes other than this one that have the bpgg extension loaded: the Ray workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if "_bpgg" in (entry / "maps").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_a_killed_worker_is_retried_and_every_image_comes_out_once(
    cluster: None, scene: Dict[str, object], tmp_path: Path
) -> None:
    ds = ray.data.from_items([{"path": p} for p in scene["paths"]])  # type: ignore[union-attr]
    out = tmp_path / "maps"
    result = bpgg.ray.predict_dataset(
        ds, scene["root"] / "model.bpgg", batch_size=4, concurrency=2, output_dir=out
    )
    rows: List[dict] = []
    failure: List[BaseException] = []

    def consume() -> None:
        try:
            rows.extend(result.take_all())
        except BaseException as e:  # reported below
            failure.append(e)

    before = set(bpgg_workers())
    consumer = threading.Thread(target=consume)
    consumer.start()
    killed = None
    seen = set()  # every worker process of this run
    deadline = time.monotonic() + 300
    while consumer.is_alive() and time.monotonic() < deadline:
        workers = [p for p in bpgg_workers() if p not in before]
        seen.update(workers)
        written = len(list(out.glob("*.tiff"))) if out.is_dir() else 0
        if killed is None and written >= 8 and workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = (workers[0], written)
        time.sleep(0.01)
    consumer.join(timeout=600)
    assert not failure, failure
    assert killed is not None, "the run ended before a worker could be killed"
    _, written = killed
    assert written < IMAGES, "killed mid-run"
    print(f"killed a worker after {written} of {IMAGES} maps; worker processes seen: {len(seen)}")
    assert len(seen) >= 3, "Ray started a worker in place of the killed one"
    check_against_cli(rows, scene, maps=True)
    assert len(list(out.glob("*.tiff"))) == IMAGES
