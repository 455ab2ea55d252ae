"""Fit, predict, score, save/load, bytes and pickle round trips, configuration by keywords."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

import bpgg
from conftest import RELOAD_TOLERANCE, SIZE, Supports, assert_same_model


def test_maps_are_float32_at_each_images_size(model: bpgg.Model, supports: Supports) -> None:
    maps = model.predict(supports.queries)
    assert len(maps) == len(supports.queries)
    for image, m in zip(supports.queries, maps):
        assert m.dtype == np.float32
        assert m.shape == image.shape[:2]
        assert np.isfinite(m).all()


def test_defects_score_above_their_surroundings(model: bpgg.Model, supports: Supports) -> None:
    maps = model.predict(supports.queries)
    for m, mask in zip(maps, supports.query_masks):
        if mask.any():
            assert m[mask].mean() > m[~mask].mean() + 0.1
    scores = model.score(supports.queries)
    defective = np.array([mask.any() for mask in supports.query_masks])
    # Every defective query outscores every normal one on these easy textures.
    assert scores[defective].min() > scores[~defective].max()


def test_fit_resolves_auto_scoring(supports: Supports) -> None:
    hybrid = bpgg.Model.fit(supports.defects, supports.masks, supports.normals, size=SIZE)
    assert hybrid.scoring == "hybrid"
    # With no normal image, the defect images' background is the normal side: still hybrid.
    defects_only = bpgg.Model.fit(supports.defects, supports.masks, size=SIZE)
    assert defects_only.scoring == "hybrid"
    knn = bpgg.Model.fit(normals=supports.normals, size=SIZE)
    assert (knn.scoring, knn.threshold_rule) == ("knn", "normal_max")


def test_one_normal_image_is_enough(supports: Supports) -> None:
    one = supports.normals[:1]
    for scoring in ("hybrid", "knn"):
        m = bpgg.Model.fit(supports.defects, supports.masks, one, scoring=scoring, size=SIZE)
        scores = m.score(supports.queries)
        defective = np.array([mask.any() for mask in supports.query_masks])
        assert np.isfinite(scores).all() and np.isfinite(m.image_threshold)
        assert scores[defective].mean() > scores[~defective].mean(), scoring


def test_score_and_predictions_agree(model: bpgg.Model, supports: Supports) -> None:
    scores = model.score(supports.queries)
    assert scores.dtype == np.float32 and scores.shape == (len(supports.queries),)
    predictions = model.predictions(supports.queries)
    maps = model.predict(supports.queries)
    for s, p, m in zip(scores, predictions, maps):
        assert p.image_score == s
        assert (p.threshold, p.image_threshold) == (model.threshold, model.image_threshold)
        assert p.defective == (s >= model.image_threshold)
        np.testing.assert_array_equal(p.map, m)
        np.testing.assert_array_equal(p.mask, m >= model.threshold)
        assert p.defect_area_px == int(p.mask.sum())
        assert p.defect_area_fraction == pytest.approx(p.mask.mean())
        assert sum(r["area_px"] for r in p.regions) == p.defect_area_px
        for r in p.regions:
            box = p.map[r["y"] : r["y"] + r["h"], r["x"] : r["x"] + r["w"]]
            assert box.max() == pytest.approx(r["max_score"])


def test_a_threshold_override_changes_only_masks(model: bpgg.Model, supports: Supports) -> None:
    low = model.predictions(supports.queries, threshold=0.0)
    assert all(p.mask.all() for p in low)
    # The verdict is taken at the image threshold, which a pixel threshold does not move.
    plain = model.predictions(supports.queries)
    assert [p.defective for p in low] == [p.defective for p in plain]
    other = model.with_threshold(0.75)
    assert (other.threshold, other.threshold_rule) == (0.75, "user")
    assert model.threshold_rule != "user"  # the original is unchanged
    for a, b in zip(other.predict(supports.queries), model.predict(supports.queries)):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_give_the_same_model(
    model: bpgg.Model, supports: Supports, tmp_path: Path
) -> None:
    path = tmp_path / "m.bpgg"
    model.save(path)
    loaded = bpgg.Model.load(str(path))
    assert_same_model(loaded, model, supports.queries, atol=RELOAD_TOLERANCE)
    assert_same_model(bpgg.Model.from_bytes(path.read_bytes()), loaded, supports.queries)
    loaded.save(tmp_path / "again.bpgg")
    again = bpgg.Model.load(tmp_path / "again.bpgg")
    assert_same_model(again, loaded, supports.queries, atol=RELOAD_TOLERANCE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_pickle_ships_the_model_file_bytes(model: bpgg.Model, supports: Supports) -> None:
    rebuild, (data,) = model.__reduce__()
    assert rebuild == bpgg.Model.from_bytes and isinstance(data, bytes)
    assert data.startswith(model.to_bytes()[:8])  # a safetensors file: its header length
    clone = pickle.loads(pickle.dumps(model))
    assert isinstance(clone, bpgg.Model)
    assert_same_model(clone, model, supports.queries, atol=RELOAD_TOLERANCE)
    assert_same_model(bpgg.Model.from_bytes(data), clone, supports.queries)


def test_a_batch_array_equals_a_list(model: bpgg.Model, supports: Supports) -> None:
    same_size = [q for q in supports.queries if q.shape[:2] == (64, 64)]
    batch = np.stack(same_size)
    for a, b in zip(model.predict(batch), model.predict(same_size)):
        np.testing.assert_array_equal(a, b)
    # Non-contiguous views are read by their strides.
    flipped = [q[:, ::-1] for q in same_size]
    copies = [np.ascontiguousarray(q) for q in flipped]
    for a, b in zip(model.predict(flipped), model.predict(copies)):
        np.testing.assert_array_equal(a, b)


def test_gray_images_equal_their_replicated_rgb(supports: Supports) -> None:
    gray = [q[..., 0] for q in supports.queries]
    model = bpgg.Model.fit(supports.defects, supports.masks, supports.normals, size=SIZE)
    rgb = [np.repeat(g[..., None], 3, axis=2) for g in gray]
    for a, b in zip(model.predict(gray), model.predict(rgb)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.predict([g[..., None] for g in gray]), model.predict(rgb)):
        np.testing.assert_array_equal(a, b)


def test_masks_as_bool_or_uint8_fit_the_same_model(supports: Supports) -> None:
    as_bool = bpgg.Model.fit(supports.defects, supports.masks, size=SIZE)
    as_u8 = bpgg.Model.fit(
        supports.defects, [m.astype(np.uint8) * 255 for m in supports.masks], size=SIZE
    )
    assert_same_model(as_bool, as_u8, supports.queries)


def test_options_are_the_configurations_json_keys(supports: Supports) -> None:
    model = bpgg.Model.fit(
        supports.defects,
        supports.masks,
        supports.normals,
        scoring="bpgg",
        size=SIZE,
        tau=10.0,
        map={"sigma_px": 2},
        prototype={"prototypes_per_class": 2, "seed": 3},
    )
    config = model.config
    assert (config["scoring"], config["size"], config["tau"]) == ("bpgg", SIZE, 10.0)
    assert config["map"] == {**bpgg.default_config()["map"], "sigma_px": 2.0}
    assert config["prototype"]["prototypes_per_class"] == 2
    assert config["prototype"]["seed"] == 3
    # Keys not given keep the library's defaults.
    assert config["reverse"] == bpgg.default_config()["reverse"]


def test_resolution_options_are_json_keys_too(supports: Supports) -> None:
    """`size` takes the forms of `--size`/`--scale`, `tile` those of `--tile`/`--tile-overlap`."""
    model = bpgg.Model.fit(
        supports.defects, supports.masks, size="native", tile={"size": 32, "overlap": 8}
    )
    assert (model.config["size"], model.config["tile"]) == ("native", {"size": 32, "overlap": 8})
    maps = model.predict(supports.queries)
    assert [m.shape for m in maps] == [q.shape[:2] for q in supports.queries]
    exact = bpgg.Model.fit(supports.defects, supports.masks, size=f"{SIZE}x{SIZE // 2}")
    assert exact.config["size"] == f"{SIZE}x{SIZE // 2}"
    assert bpgg.Model.fit(supports.defects, supports.masks, size={"scale": 0.5}).config[
        "size"
    ] == {"scale": 0.5}


def test_defaults_are_the_librarys(supports: Supports) -> None:
    defaults = bpgg.default_config()
    assert defaults["size"] == "256x256" and defaults["scoring"] == "auto"
    model = bpgg.Model.fit(supports.defects, supports.masks, supports.normals)
    assert model.config == {**defaults, "scoring": "hybrid"}


def test_the_stub_names_every_option() -> None:
    """The `.pyi` lists the configuration's keys for editors; it must not drift from them."""
    stub = Path(bpgg.__file__).with_name("_bpgg.pyi").read_text()
    tree = ast.parse(stub)
    model = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model")
    fit = next(n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == "fit")
    keywords = {a.arg for a in fit.args.kwonlyargs} - {"checkpoint"}
    assert keywords == set(bpgg.default_config())
