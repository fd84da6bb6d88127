"""Training rows are put in an order that depends only on their values (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.stages.train import canonical_order


@pytest.mark.parametrize("labels", [np.array([0, 1, 1, 0, 2, 1] * 50),
                                    np.array(["a", "b", "b", "a", "c", "b"] * 50, dtype=object)])
def test_any_arrival_order_gives_the_same_training_order(labels: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values must not make the order random
    x[7] = x[8]  # duplicate rows are allowed
    y = labels
    o = canonical_order(x, y)
    for seed in range(5):
        p = np.random.default_rng(seed).permutation(len(x))
        q = canonical_order(x[p], y[p])
        np.testing.assert_array_equal(x[p][q], x[o])
        assert list(y[p][q]) == list(y[o])
    assert sorted(o.tolist()) == list(range(len(x)))  # a permutation: no row lost or doubled
