"""Comparing evaluations: streamed and whole-frame results must be equal, nan included."""

from __future__ import annotations

import math
from typing import Any

from pipelines.stages.evaluate import Evaluation


def same(a: Any, b: Any) -> bool:
    """Equal, nan equal to nan, recursively through dicts."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b)


def assert_same_evaluation(got: Evaluation, expected: Evaluation) -> None:
    """Metrics, slices and confusion matrix identical (not merely close)."""
    assert same(got.metrics, expected.metrics), (got.metrics, expected.metrics)
    assert same(got.slices, expected.slices), (got.slices, expected.slices)
    assert got.confusion == expected.confusion
