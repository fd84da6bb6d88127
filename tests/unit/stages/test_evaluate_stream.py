"""Unit tests for streamed evaluation: per-batch statistics merged in any order give the
metrics of the whole frame (pipelines.stages.eval_stats and evaluate's stream path, no Ray)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from pipelines.stages import evaluate as ev
from pipelines.stages.eval_stats import (
    MIN_CAP,
    Histogram,
    RegressionStats,
    average_precision,
    exact_sum,
    exact_value,
    roc_auc,
)
from tests.evaluation_helpers import assert_same_evaluation, same

CLASSES3 = ["a", "b", "c"]


def chunks(frame: pd.DataFrame, parts: int, seed: int) -> list[pd.DataFrame]:
    """``frame`` cut at random places into ``parts`` pieces (some may be empty), shuffled."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(frame) + 1, parts - 1))
    pieces = [frame.iloc[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True)]
    return [pieces[i] for i in rng.permutation(len(pieces))]


def streamed(frame: pd.DataFrame, parts: int, seed: int, *, slices: tuple[str, ...] = (),
             **kw: Any) -> ev.Evaluation:
    """What evaluate_predictions does with a Dataset, minus Ray: batches in shuffled order."""
    pieces = chunks(frame, parts, seed)

    def stream(kernel: ev.Kernel, columns: list[str]) -> list[Any]:
        return [kernel(p[columns]) for p in pieces]

    spec = ev._spec(list(frame.columns), slices=slices, **kw)
    return ev._evaluate_stream(stream, spec, None)


def binary_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(n), 1)  # heavy ties in the scores
    y = (rng.random(n) < p).astype(float)
    y[rng.random(n) < 0.03] = np.nan  # rows without a label are left out
    age = rng.integers(18, 90, n).astype(float)
    age[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "y": y, "prediction": (p >= 0.5).astype(int), "probability": p,
        "plan": rng.choice(np.array(["basic", "pro", "tiny", None], dtype=object), n,
                           p=[0.55, 0.4, 0.004, 0.046]),
        "age": age, "seats": rng.integers(1, 4, n),
    })


def multiclass_frame(n: int = 2000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([1, 1, 1], n)
    y = np.array([*CLASSES3, "zebra"], dtype=object)[rng.choice(4, n, p=[0.3, 0.3, 0.38, 0.02])]
    frame = pd.DataFrame({"y": y, "prediction": np.array(CLASSES3)[proba.argmax(axis=1)],
                          "probability": proba.max(axis=1), "region": rng.choice(["n", "s"], n)})
    for i, c in enumerate(CLASSES3):
        frame[f"probability_{c}"] = proba[:, i]
    return frame


def regression_frame(n: int = 2000, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.normal(1000.0, 1.0, n)  # a large mean: r2 needs an exact sum of squares
    y[::9] = 0.0
    return pd.DataFrame({"y": y, "prediction": y + rng.normal(size=n),
                         "income": rng.lognormal(size=n)})


BINARY = {"target": "y", "task": "binary", "classes": [0, 1]}
MULTI = {"target": "y", "task": "multiclass", "classes": CLASSES3}
REGRESSION = {"target": "y", "task": "regression", "classes": None}


@pytest.mark.parametrize("seed", range(4))
def test_binary_stream_equals_whole_frame(seed: int) -> None:
    frame = binary_frame()
    slices = ("plan", "age", "seats")
    whole = ev.evaluate_frame(frame, slices=slices, **BINARY)
    got = streamed(frame, 7, seed, slices=slices, **BINARY)
    assert_same_evaluation(got, whole)
    assert got.confusion == ev.confusion(frame, target="y", classes=[0, 1])
    assert same(got.slices, ev.slice_metrics(frame, slices=slices, **BINARY))
    # the slice of fewer than 20 rows reports rows only; age is cut into quartiles
    assert set(got.slices["plan"]["tiny"]) == {"rows"}
    assert list(got.slices["plan"]) == ["basic", "pro", "tiny", ev.MISSING_SLICE]
    assert len(got.slices["age"]) == 5 and next(iter(got.slices["age"])).startswith("[18")
    assert list(got.slices["seats"]) == ["1", "2", "3"]


def test_binary_stream_matches_sklearn_with_ties() -> None:
    frame = binary_frame().dropna(subset=["y"])
    got = streamed(frame, 5, 0, **BINARY).metrics
    y, p = frame["y"].astype(int), frame["probability"]
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12, abs=1e-12)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p), rel=1e-12, abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_with_unseen_label_stream_equals_whole_frame(seed: int) -> None:
    frame = multiclass_frame()
    whole = ev.evaluate_frame(frame, slices=("region",), **MULTI)
    assert_same_evaluation(streamed(frame, 6, seed, slices=("region",), **MULTI), whole)
    got = whole
    assert math.isnan(got.metrics["log_loss"])  # "zebra" is not a known class
    assert got.metrics["accuracy"] == pytest.approx(
        float(np.mean(frame["y"] == frame["prediction"])), rel=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_regression_stream_equals_whole_frame(seed: int) -> None:
    frame = regression_frame()
    whole = ev.evaluate_frame(frame, slices=("income",), **REGRESSION)
    got = streamed(frame, 9, seed, slices=("income",), **REGRESSION)
    assert_same_evaluation(got, whole)
    y, pred = frame["y"], frame["prediction"]
    assert got.metrics["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-12)
    assert got.metrics["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)),
                                                rel=1e-12)
    assert len(got.slices["income"]) == 4
    assert same(got.slices, ev.slice_metrics(frame, slices=["income"], **REGRESSION))


def test_all_labels_missing_gives_nan_metrics_and_no_rows() -> None:
    frame = binary_frame(100).assign(y=np.nan)
    got = streamed(frame, 3, 0, **BINARY)
    assert all(math.isnan(v) for v in got.metrics.values())
    assert got.confusion == [[0, 0], [0, 0]]


def test_exact_sums_do_not_depend_on_splitting() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=1000) * 10.0 ** rng.integers(-300, 300, 1000),
                        [5e-324, -5e-324, 0.0, 1e308, 1e308]])
    whole = exact_sum(x)
    assert whole == sum(exact_sum(part) for part in np.array_split(rng.permutation(x), 7))
    assert exact_value(whole) == sum(Fraction(v) for v in x.tolist())
    assert exact_value(exact_sum(x, square=True)) == sum(Fraction(v) ** 2 for v in x.tolist())


def test_histogram_merge_is_exact_and_order_free() -> None:
    rng = np.random.default_rng(6)
    score = np.round(rng.random(5000), 3)
    hit = rng.random(5000) < score
    parts = [Histogram.of(s, np.column_stack([h, ~h]))
             for s, h in zip(np.array_split(score, 5), np.array_split(hit, 5), strict=True)]
    forward, backward = parts[0], parts[-1]
    for h in parts[1:]:
        forward = forward.merge(h)
    for h in parts[-2::-1]:
        backward = backward.merge(h)
    assert np.array_equal(forward.values, backward.values)
    assert np.array_equal(forward.counts, backward.counts)
    assert forward.bits == 52
    assert roc_auc(forward) == pytest.approx(skm.roc_auc_score(hit, score), abs=1e-15)
    assert average_precision(forward) == pytest.approx(
        skm.average_precision_score(hit, score), abs=1e-15)


def test_histogram_past_the_cap_is_bounded_deterministic_and_close() -> None:
    rng = np.random.default_rng(7)
    n = 100_000
    score = rng.random(n)
    hit = rng.random(n) < score
    counts = np.column_stack([hit, ~hit])
    pieces = np.array_split(np.arange(n), 10)
    results = []
    for order in (range(10), reversed(range(10)), rng.permutation(10)):
        merged = Histogram.empty(2)
        for i in order:
            merged = merged.merge(Histogram.of(score[pieces[i]], counts[pieces[i]], cap=MIN_CAP),
                                  cap=MIN_CAP)
        results.append(merged)
    for h in results:
        assert len(h.values) <= MIN_CAP and h.bits < 52
        assert np.array_equal(h.values, results[0].values)
        assert np.array_equal(h.counts, results[0].counts) and h.bits == results[0].bits
        assert h.counts.sum() == n
    # the same as truncating everything at once
    at_once = Histogram.of(score, counts, cap=MIN_CAP)
    assert np.array_equal(at_once.values, results[0].values)
    assert roc_auc(results[0]) == pytest.approx(skm.roc_auc_score(hit, score), abs=1e-3)
    assert average_precision(results[0]) == pytest.approx(
        skm.average_precision_score(hit, score), abs=1e-3)


def test_histogram_counts_non_finite_scores() -> None:
    h = Histogram.of(np.array([0.1, np.nan, np.inf, 0.4]), np.array([[1, 0], [0, 1], [1, 0], [0, 1]]))
    assert h.nonfinite == 2 and list(h.values) == [0.1, 0.4]
    assert math.isnan(roc_auc(h))


def test_quartile_edges_equal_nanquantile() -> None:
    rng = np.random.default_rng(8)
    for values in (rng.normal(size=1001), rng.integers(0, 50, 37).astype(float),
                   np.repeat([1.0, 2.5, 7.0, 9.0], [5, 1, 30, 2]), rng.lognormal(size=12)):
        h = Histogram.of(values, np.ones(len(values)))
        expected = np.unique(np.nanquantile(values, [0.0, 0.25, 0.5, 0.75, 1.0]))
        assert np.array_equal(ev._quartile_edges(h), expected)


def test_residual_sample_is_bounded_and_order_free() -> None:
    rng = np.random.default_rng(9)
    y = rng.normal(size=50_000)
    pred = y + rng.normal(size=50_000)
    parts = [RegressionStats.of(a, b, sample=True)
             for a, b in zip(np.array_split(y, 4), np.array_split(pred, 4), strict=True)]
    one = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    other = parts[3].merge(parts[1]).merge(parts[0].merge(parts[2]))
    assert one.sample is not None and other.sample is not None
    assert len(one.sample.y) == 20_000
    assert np.array_equal(one.sample.y, other.sample.y)
    assert np.array_equal(one.sample.pred, other.sample.pred)
    assert one.metrics() == other.metrics()
