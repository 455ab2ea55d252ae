"""bpgg.metrics.evaluate: an analytic case, an independent AUROC reference, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import bpgg
from bpgg.metrics import DEFAULT_FPR_LIMIT, evaluate


def test_an_analytic_case() -> None:
    # One 3x2 map with a two-pixel defect separated by the threshold 0.7, one defect-free map.
    mask = np.array([[False, True, True], [False, False, False]])
    defective = np.array([[0.2, 0.9, 0.7], [0.1, 0.3, 0.2]], dtype=np.float32)
    normal = np.array([[0.1, 0.2, 0.3], [0.2, 0.1, 0.6]], dtype=np.float32)
    m = evaluate([defective, normal], [mask, np.zeros((2, 3), bool)])
    assert set(m) == {"pixel_auroc", "aupro", "pixel_ap", "f1_max", "f1_threshold", "image_auroc"}
    assert m["pixel_auroc"] == 1.0
    assert m["aupro"] == 1.0
    assert m["pixel_ap"] == 1.0
    assert m["f1_max"] == 1.0
    assert m["f1_threshold"] == pytest.approx(0.7)
    assert m["image_auroc"] == 1.0
    assert DEFAULT_FPR_LIMIT == 0.3


def mann_whitney_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC as the probability that a defect pixel outscores a normal one (ties count half),
    from average ranks: an independent reference for the sweep in Rust."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels.sum()
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def test_pixel_auroc_equals_the_rank_statistic() -> None:
    rng = np.random.default_rng(3)
    masks = [rng.random((16, 20)) < 0.1 for _ in range(4)]
    # Scores rounded to a few levels so that ties occur.
    maps = [np.round(rng.random((16, 20)) + 0.5 * m, 1).astype(np.float32) for m in masks]
    got = evaluate(maps, masks)["pixel_auroc"]
    want = mann_whitney_auroc(np.concatenate([m.ravel() for m in maps]),
                              np.concatenate([m.ravel() for m in masks]))
    assert got == pytest.approx(want, abs=1e-9)
    # uint8 masks (255 = defect) and float64 maps give the same numbers.
    assert evaluate([m.astype(np.float64) for m in maps],
                    [m.astype(np.uint8) * 255 for m in masks]) == evaluate(maps, masks)


def test_image_labels() -> None:
    rng = np.random.default_rng(4)
    masks = [rng.random((8, 8)) < 0.2 for _ in range(3)]
    maps = [rng.random((8, 8)).astype(np.float32) for _ in range(3)]
    assert evaluate(maps, masks, image_labels=[True, True, True])["image_auroc"] is None
    labelled = evaluate(maps, masks, image_labels=[True, False, False])["image_auroc"]
    scores = [float(m.max()) for m in maps]
    want = sum((scores[0] > s) + 0.5 * (scores[0] == s) for s in scores[1:]) / 2
    assert labelled == want


def test_bad_inputs() -> None:
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    good = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="no maps"):
        evaluate([], [])
    with pytest.raises(ValueError, match=r"1 map\(s\) but 2 mask\(s\)"):
        evaluate([good], [mask, mask])
    with pytest.raises(ValueError, match=r"masks\[0\] is 5x4 but maps\[0\] is 4x4"):
        evaluate([good], [np.zeros((4, 5), bool)])
    nan = good.copy()
    nan[2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate([nan], [mask])
    with pytest.raises(ValueError, match=r"maps\[0\]: dtype int64, expected float32"):
        evaluate([np.zeros((4, 4), np.int64)], [mask])
    with pytest.raises(ValueError, match="only one class present"):
        evaluate([good], [np.zeros((4, 4), bool)])
    with pytest.raises(ValueError, match="FPR limit 0 is not in"):
        evaluate([good], [mask], fpr_limit=0.0)
    with pytest.raises(ValueError, match=r"maps: a single array of shape \[4, 4\]; pass a list"):
        evaluate(good, [mask])
    with pytest.raises(TypeError, match="maps: expected a list of numpy arrays"):
        evaluate(0.5, [mask])


def test_stacked_arrays_equal_lists() -> None:
    rng = np.random.default_rng(6)
    masks = rng.random((3, 8, 8)) < 0.2
    maps = rng.random((3, 8, 8)).astype(np.float32)
    assert evaluate(maps, masks) == evaluate(list(maps), list(masks))
