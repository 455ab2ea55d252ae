"""Several threads predicting with one model at once get what one thread gets alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import bpgg
from conftest import Supports, assert_same_model


def test_concurrent_predicts_equal_sequential_ones(model: bpgg.Model, supports: Supports) -> None:
    rng = np.random.default_rng(5)
    # Each thread gets its own mix of the queries (different batches, different orders).
    jobs = [
        [supports.queries[i] for i in rng.permutation(len(supports.queries))[: 2 + t % 4]]
        for t in range(8)
    ]
    alone = [model.predict(job) for job in jobs]
    alone_scores = [model.score(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(model.predict, jobs))
        together_scores = list(pool.map(model.score, jobs))
        together_fits = list(
            pool.map(
                lambda _: bpgg.Model.fit(
                    supports.defects, supports.masks, supports.normals, size=64
                ),
                range(3),
            )
        )
    for a, b in zip(alone, together):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for a, b in zip(alone_scores, together_scores):
        np.testing.assert_array_equal(a, b)
    for fitted in together_fits:
        assert_same_model(fitted, model, supports.queries)
