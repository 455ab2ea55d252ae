"""The package and the `bpgg` command give the same models and the same maps (max abs difference
≤ 1e-5), on synthetic images and on the real data set in ../shared/data when it is there."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import bpgg
from conftest import SIZE, Supports, cli_predict, data_root, make_supports, run_cli, write_png

TOLERANCE = 1e-5


def write_supports(root: Path, s: Supports) -> None:
    for i, (image, mask) in enumerate(zip(s.defects, s.masks)):
        write_png(root / "defects" / f"d{i}.png", image)
        write_png(root / "masks" / f"d{i}.png", mask.astype(np.uint8) * 255)
    for i, image in enumerate(s.normals):
        write_png(root / "normal" / f"n{i}.png", image)


def write_queries(root: Path, images: List[np.ndarray]) -> List[Path]:
    paths = []
    for i, image in enumerate(images):
        path = root / f"q{i:02}.png"
        write_png(path, image)
        paths.append(path)
    return paths


def assert_same_predictions(
    model: bpgg.Model, images: List[np.ndarray], paths: List[Path], records: Dict[str, dict]
) -> None:
    predictions = model.predictions(images)
    assert len(records) == len(paths)
    for path, p in zip(paths, predictions):
        record = records[str(path)]
        cli_map = bpgg.read_map(record["map"])
        assert cli_map.shape == p.map.shape
        assert np.abs(cli_map - p.map).max() <= TOLERANCE
        assert abs(record["image_score"] - p.image_score) <= TOLERANCE
        assert record["defective"] == p.defective
        assert record["defect_area_px"] == p.defect_area_px


@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_the_packages_model_predicted_by_the_cli(cli: Path, tmp_path: Path, gray: bool) -> None:
    s = make_supports(seed=11, gray=gray)
    model = bpgg.Model.fit(s.defects, s.masks, s.normals, size=SIZE)
    model.save(tmp_path / "py.bpgg")
    paths = write_queries(tmp_path / "queries", s.queries)
    records = cli_predict(cli, tmp_path / "py.bpgg", tmp_path / "queries", tmp_path / "out")
    assert_same_predictions(model, s.queries, paths, records)


def test_the_clis_model_equals_the_packages(cli: Path, tmp_path: Path) -> None:
    """`bpgg fit` flags and `Model.fit` keywords of the same settings give the same model."""
    s = make_supports(seed=12)
    write_supports(tmp_path, s)
    run_cli(
        cli, "--quiet", "fit",
        "--defects", tmp_path / "defects", "--masks", tmp_path / "masks",
        "--normal", tmp_path / "normal",
        "--size", SIZE, "--sigma", 2, "--prototypes", 2, "--model-seed", 5,
        "--hybrid-weight", 0.25, "--normal-weight", 0.75, "--tau", 15, "--scoring", "hybrid",
        "--output", tmp_path / "cli.bpgg",
    )  # fmt: skip
    ours = bpgg.Model.fit(
        s.defects, s.masks, s.normals,
        size=SIZE, map={"sigma_px": 2}, scoring="hybrid", tau=15,
        prototype={"prototypes_per_class": 2, "seed": 5, "normal_source_weight": 0.75},
        knn={"seed": 5}, hybrid={"weight": 0.25},
    )  # fmt: skip
    theirs = bpgg.Model.load(tmp_path / "cli.bpgg")
    assert theirs.config == ours.config
    assert theirs.threshold == pytest.approx(ours.threshold, abs=TOLERANCE)
    for a, b in zip(theirs.predict(s.queries), ours.predict(s.queries)):
        assert np.abs(a - b).max() <= TOLERANCE
    paths = write_queries(tmp_path / "queries", s.queries)
    records = cli_predict(cli, tmp_path / "cli.bpgg", tmp_path / "queries", tmp_path / "out")
    assert_same_predictions(ours, s.queries, paths, records)


def magnetic_tile() -> Path:
    root = data_root() / "magnetic_tile"
    if not (root / "train" / "good").is_dir():
        pytest.skip(f"real data not found at {root} (set BPGG_DATA to the data folder)")
    return root


def test_real_images_give_the_clis_maps(cli: Path, tmp_path: Path) -> None:
    root = magnetic_tile()
    defect_images = sorted((root / "test" / "crack").glob("*.png"))[:2]
    normal_images = sorted((root / "train" / "good").glob("*.png"))[:3]
    for image in defect_images:
        (tmp_path / "defects").mkdir(exist_ok=True)
        shutil.copy(image, tmp_path / "defects" / image.name)
        (tmp_path / "masks").mkdir(exist_ok=True)
        shutil.copy(
            root / "ground_truth" / "crack" / f"{image.stem}_mask.png",
            tmp_path / "masks" / f"{image.stem}_mask.png",
        )
    (tmp_path / "normal").mkdir()
    for image in normal_images:
        shutil.copy(image, tmp_path / "normal" / image.name)
    run_cli(
        cli, "--quiet", "fit", "--defects", tmp_path / "defects", "--masks", tmp_path / "masks",
        "--normal", tmp_path / "normal", "--output", tmp_path / "cli.bpgg",
    )  # fmt: skip

    # The same supports through the package: decoded by the library, masks from gray PNGs.
    defects = [bpgg.read_image(p) for p in defect_images]
    masks = [
        bpgg.read_image(root / "ground_truth" / "crack" / f"{p.stem}_mask.png")[..., 0]
        for p in defect_images
    ]
    normals = [bpgg.read_image(p) for p in normal_images]
    ours = bpgg.Model.fit(defects, masks, normals)
    theirs = bpgg.Model.load(tmp_path / "cli.bpgg")
    assert ours.config == theirs.config
    assert ours.threshold == pytest.approx(theirs.threshold, abs=TOLERANCE)

    queries = []
    for kind in ("blowhole", "break", "fray", "uneven", "good"):
        queries += sorted((root / "test" / kind).glob("*.png"))[3:5]
    (tmp_path / "queries").mkdir()
    paths = []
    for q in queries:
        paths.append(tmp_path / "queries" / f"{q.parent.name}_{q.name}")
        shutil.copy(q, paths[-1])
    records = cli_predict(cli, tmp_path / "cli.bpgg", tmp_path / "queries", tmp_path / "out")
    # Gray images (all of magnetic_tile) go in as (H, W) arrays, the CLI decodes the files.
    images = []
    for p in paths:
        image = bpgg.read_image(p)
        images.append(image[..., 0] if (image == image[..., :1]).all() else image)
    assert_same_predictions(ours, images, paths, records)
