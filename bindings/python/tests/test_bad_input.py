"""Bad inputs give exceptions that name the input and the problem (the library's messages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bpgg
from conftest import SIZE, Supports, write_png


def fit(supports: Supports, **changes: object) -> bpgg.Model:
    args = {
        "defects": supports.defects,
        "masks": supports.masks,
        "normals": supports.normals,
        "size": SIZE,
    }
    args.update(changes)
    return bpgg.Model.fit(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((32, 32, 3), dtype=np.float64), r"images\[1\]: dtype float64, expected uint8"),
        (np.zeros((32, 32, 3), dtype=np.uint16), r"images\[1\]: dtype uint16, expected uint8"),
        (np.zeros((32, 32, 4), dtype=np.uint8), r"images\[1\]: shape \[32, 32, 4\] is not an"),
        (np.zeros((32,), dtype=np.uint8), r"images\[1\]: shape \[32\] is not an image"),
        (np.zeros((0, 32), dtype=np.uint8), r"images\[1\]: image has no pixels \(32x0\)"),
    ],
)
def test_bad_images(model: bpgg.Model, supports: Supports, image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.predict([supports.queries[0], image])


def test_a_single_image_is_not_a_list(model: bpgg.Model, supports: Supports) -> None:
    with pytest.raises(ValueError, match=r"a single array of shape \[64, 64, 3\]; pass a list"):
        model.predict(supports.queries[0])
    with pytest.raises(TypeError, match=r"images\[0\]: expected a numpy array, got str"):
        model.predict(["image.png"])
    with pytest.raises(TypeError, match="images: expected a list of numpy images"):
        model.predict(3)
    with pytest.raises(TypeError, match="got a string"):
        model.predict("image.png")


def test_an_empty_list_predicts_nothing(model: bpgg.Model) -> None:
    assert model.predict([]) == []
    assert model.score([]).shape == (0,)


def test_fit_without_supports() -> None:
    with pytest.raises(ValueError, match="no support images"):
        bpgg.Model.fit([], [], [])
    with pytest.raises(ValueError, match="no support images"):
        bpgg.Model.fit()
    with pytest.raises(ValueError, match="`bpgg` needs at least one defect image"):
        bpgg.Model.fit([], [], [], scoring="bpgg")


def test_masks_must_fit_their_images(supports: Supports) -> None:
    small = [np.zeros((30, 30), dtype=bool)] + supports.masks[1:]
    small[0][5:10, 5:10] = True
    with pytest.raises(ValueError, match=r"masks\[0\]: mask is 30x30 but its image is 64x64"):
        fit(supports, masks=small)
    with pytest.raises(ValueError, match=r"2 defect image\(s\) but 1 mask\(s\)"):
        fit(supports, masks=supports.masks[:1])
    empty = [np.zeros((64, 64), dtype=bool)] + supports.masks[1:]
    with pytest.raises(ValueError, match=r"masks\[0\]: mask of a defect support is empty"):
        fit(supports, masks=empty)
    with pytest.raises(ValueError, match=r"masks\[1\]: dtype float32, expected bool or uint8"):
        fit(supports, masks=[supports.masks[0], supports.masks[1].astype(np.float32)])
    with pytest.raises(ValueError, match=r"masks\[0\]: shape \[64, 64, 3\] is not a mask"):
        fit(supports, masks=[np.zeros((64, 64, 3), dtype=bool), supports.masks[1]])


def test_zero_one_uint8_masks_are_refused_not_guessed(supports: Supports) -> None:
    labels = [m.astype(np.uint8) for m in supports.masks]
    with pytest.raises(ValueError, match=r"masks\[0\]: uint8 mask holds only 0 and 1"):
        fit(supports, masks=labels)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scorng": "knn"}, "invalid model option: unknown field `scorng`"),
        ({"map": {"sigma": 2}}, "invalid model option: unknown field `sigma`"),
        ({"size": 8}, r"size \(long side\) must be in 16..=4096 pixels, got 8"),
        ({"size": "640x"}, "expected N"),
        ({"size": {"scale": 0}}, "scale must be in"),
        ({"tile": {"size": 100}}, "tile size must be a multiple of 16"),
        ({"tile": {"size": 256, "overlap": 12}}, "tile overlap must be a multiple of 8"),
        ({"scoring": "fast"}, "unknown variant `fast`"),
        ({"tau": float("nan")}, "option `tau`: NaN is not a finite number"),
        ({"map": {"sigma_px": -1.0}}, "sigma must be finite and ≥ 0"),
        ({"hybrid": {"weight": 2.0}}, "weight"),
        ({"size": "big"}, "size `big`: expected N \\(long side, aspect kept\\), WxH"),
    ],
)
def test_bad_options(supports: Supports, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit(supports, **options)


def test_a_scoring_the_supports_cannot_serve(supports: Supports) -> None:
    with pytest.raises(ValueError, match="needs at least one defect image"):
        bpgg.Model.fit(normals=supports.normals, scoring="bpgg", size=SIZE)
    with pytest.raises(ValueError, match="needs at least one defect image"):
        bpgg.Model.fit(normals=supports.normals, scoring="hybrid", size=SIZE)


def test_bad_thresholds(model: bpgg.Model, supports: Supports) -> None:
    with pytest.raises(ValueError, match="threshold must be finite"):
        model.predictions(supports.queries, threshold=float("nan"))
    with pytest.raises(ValueError, match="threshold must be finite"):
        model.with_threshold(float("inf"))


def test_files(tmp_path: Path, model: bpgg.Model) -> None:
    with pytest.raises(FileNotFoundError, match="missing.bpgg"):
        bpgg.Model.load(tmp_path / "missing.bpgg")
    garbage = tmp_path / "garbage.bpgg"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="garbage.bpgg: not a bpgg model file"):
        bpgg.Model.load(garbage)
    with pytest.raises(ValueError, match="not a bpgg model file"):
        bpgg.Model.from_bytes(model.to_bytes()[:100])
    with pytest.raises(FileNotFoundError, match="head.safetensors"):
        bpgg.Model.fit(
            normals=[np.zeros((64, 64), np.uint8)] * 2, checkpoint=tmp_path / "head.safetensors"
        )
    with pytest.raises(FileNotFoundError, match="nope.png"):
        bpgg.read_image(tmp_path / "nope.png")
    write_png(tmp_path / "big.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match=r"big.png: image declares 30x20 = 600 pixels, more than "
                       r"the limit of 500 \(raise max_pixels if the file is genuine\)"):
        bpgg.read_image(tmp_path / "big.png", max_pixels=500)
    assert bpgg.read_image(tmp_path / "big.png", max_pixels=600).shape == (20, 30, 3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match="broken.png"):
        bpgg.read_image(broken)
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(OSError, match="a_file"):
        model.save(tmp_path / "a_file" / "m.bpgg")
    with pytest.raises(ValueError, match="written as .tiff, .tif or .npy"):
        bpgg.write_map(tmp_path / "m.png", np.zeros((4, 4), np.float32))


def test_maps_round_trip_through_files(tmp_path: Path) -> None:
    m = np.random.default_rng(1).random((5, 7), dtype=np.float32)
    for name in ("m.tiff", "m.npy"):
        bpgg.write_map(tmp_path / name, m)
        np.testing.assert_array_equal(bpgg.read_map(tmp_path / name), m)
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite value"):
        bpgg.read_map(tmp_path / "nan.npy")
