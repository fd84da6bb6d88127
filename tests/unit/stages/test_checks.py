"""Unit tests for pipelines.stages.checks: each check passes a good model and fails a bad one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.stages.checks import (
    CHECK_NAMES,
    CheckResult,
    Predict,
    failed_checks,
    run_model_checks,
)

CLASSES3 = ["a", "b", "c"]
BUDGET_MS = 50.0


def sample(rows: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "x1": rng.normal(size=rows),
        "x2": rng.normal(size=rows),
        "plan": rng.choice(["basic", "pro"], rows),
    })


def binary_model(df: pd.DataFrame) -> pd.DataFrame:
    """A well-behaved model: row by row, by column name."""
    p = 1.0 / (1.0 + np.exp(-(df["x1"].to_numpy() - df["x2"].to_numpy())))
    return pd.DataFrame({"prediction": np.where(p >= 0.5, 1, 0), "probability": p})


def multiclass_model(df: pd.DataFrame) -> pd.DataFrame:
    logits = np.column_stack([df["x1"], df["x2"], np.zeros(len(df))])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    out = pd.DataFrame({"prediction": np.array(CLASSES3)[proba.argmax(axis=1)],
                        "probability": proba.max(axis=1)})
    for i, c in enumerate(CLASSES3):
        out[f"probability_{c}"] = proba[:, i]
    return out


def regression_model(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"prediction": 2.0 * df["x1"].to_numpy() + df["x2"].to_numpy()})


def run(predict: Predict, *, task: str = "binary", classes: Sequence[Any] | None = (0, 1),
        budget: float = BUDGET_MS, rows: int = 30) -> dict[str, CheckResult]:
    results = run_model_checks(predict, sample(rows), task=task,
                               classes=list(classes) if classes else None,
                               latency_budget_ms=budget)
    assert [r.name for r in results] == list(CHECK_NAMES)
    return {r.name: r for r in results}


def only_failed(results: dict[str, CheckResult]) -> list[str]:
    return failed_checks(list(results.values()))


# --------------------------------------------------------------------------- good models


@pytest.mark.parametrize(
    ("predict", "task", "classes"),
    [(binary_model, "binary", (0, 1)), (multiclass_model, "multiclass", CLASSES3),
     (regression_model, "regression", None)],
)
def test_good_model_passes_every_check(
    predict: Predict, task: str, classes: Sequence[Any] | None
) -> None:
    results = run(predict, task=task, classes=classes)
    assert only_failed(results) == [], {r.name: r.detail for r in results.values()}
    assert "ms" in results["latency"].detail
    assert "budget 50 ms" in results["latency"].detail


def test_binary_labels_read_as_floats_still_match_classes() -> None:
    def floats(df: pd.DataFrame) -> pd.DataFrame:
        out = binary_model(df)
        out["prediction"] = out["prediction"].astype(float)
        return out

    assert only_failed(run(floats, classes=(0, 1))) == []


# --------------------------------------------------------------------------- bad models


def test_nan_outputs_fail_finite() -> None:
    def nan_probability(df: pd.DataFrame) -> pd.DataFrame:
        out = binary_model(df)
        out["probability"] = np.where(df["x1"].to_numpy() > 1.0, np.nan, out["probability"])
        return out

    results = run(nan_probability)
    assert only_failed(results) == ["finite", "types_and_range"]
    expected = int((sample()["x1"] > 1.0).sum())
    assert expected > 0
    assert f"probability: {expected} of 30" in results["finite"].detail


def test_missing_label_fails_finite() -> None:
    def missing_label(df: pd.DataFrame) -> pd.DataFrame:
        out = multiclass_model(df)
        out["prediction"] = out["prediction"].astype(object).where(df["x2"].to_numpy() < 1.0, None)
        return out

    assert not run(missing_label, task="multiclass", classes=CLASSES3)["finite"].passed


def test_infinite_regression_fails_finite() -> None:
    def inf(df: pd.DataFrame) -> pd.DataFrame:
        out = regression_model(df)
        out["prediction"] = np.where(df["x1"].to_numpy() > 1.0, np.inf, out["prediction"])
        return out

    results = run(inf, task="regression", classes=None)
    assert only_failed(results) == ["finite"]


def test_probabilities_above_one_fail_range() -> None:
    def too_big(df: pd.DataFrame) -> pd.DataFrame:
        out = binary_model(df)
        out["probability"] = out["probability"] * 1.5
        return out

    results = run(too_big)
    assert only_failed(results) == ["types_and_range"]
    assert "outside [0, 1]" in results["types_and_range"].detail


def test_unknown_label_fails_range() -> None:
    def unknown(df: pd.DataFrame) -> pd.DataFrame:
        out = binary_model(df)
        out["prediction"] = np.where(out["prediction"] == 1, 2, 0)
        return out

    results = run(unknown)
    assert not results["types_and_range"].passed
    assert "2" in results["types_and_range"].detail


def test_regression_text_output_fails_types() -> None:
    def text(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"prediction": regression_model(df)["prediction"].astype(str)})

    results = run(text, task="regression", classes=None)
    assert not results["types_and_range"].passed
    assert "not numeric" in results["types_and_range"].detail


def test_multiclass_probabilities_not_summing_to_one() -> None:
    def unnormalised(df: pd.DataFrame) -> pd.DataFrame:
        out = multiclass_model(df)
        out["probability_c"] = out["probability_c"] * 0.5
        return out

    results = run(unnormalised, task="multiclass", classes=CLASSES3)
    assert only_failed(results) == ["probabilities_sum_to_one"]
    assert "do not sum to 1" in results["probabilities_sum_to_one"].detail


def test_multiclass_missing_class_column() -> None:
    def missing(df: pd.DataFrame) -> pd.DataFrame:
        return multiclass_model(df).drop(columns="probability_b")

    results = run(missing, task="multiclass", classes=CLASSES3)
    assert {"types_and_range", "probabilities_sum_to_one"} <= set(only_failed(results))


def test_nondeterministic_model_fails() -> None:
    rng = np.random.default_rng(5)

    def noisy(df: pd.DataFrame) -> pd.DataFrame:
        out = regression_model(df)
        out["prediction"] += rng.normal(scale=1e-3, size=len(df))
        return out

    results = run(noisy, task="regression", classes=None)
    assert not results["deterministic"].passed
    assert "prediction differs" in results["deterministic"].detail


def test_column_order_dependent_model_fails() -> None:
    def positional(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"prediction": df.iloc[:, 0].astype(str).str.len().astype(float)})

    results = run(positional, task="regression", classes=None)
    assert only_failed(results) == ["column_order_independent"]


def test_batch_dependent_model_fails_single_row() -> None:
    def batch_normalised(df: pd.DataFrame) -> pd.DataFrame:
        x = df["x1"].to_numpy()
        return pd.DataFrame({"prediction": x - x.mean()})

    results = run(batch_normalised, task="regression", classes=None)
    assert only_failed(results) == ["single_row_equals_batch"]
    assert "20 of 20 rows" in results["single_row_equals_batch"].detail


def test_single_row_check_uses_all_rows_of_a_small_sample() -> None:
    results = run(regression_model, task="regression", classes=None, rows=3)
    assert "3 rows predicted alone" in results["single_row_equals_batch"].detail


def test_slow_model_fails_latency_with_measured_time() -> None:
    def slow(df: pd.DataFrame) -> pd.DataFrame:
        time.sleep(0.004)
        return regression_model(df)

    results = run(slow, task="regression", classes=None, budget=1.0)
    assert only_failed(results) == ["latency"]
    detail = results["latency"].detail
    median = float(detail.split("median ")[1].split(" ms")[0])
    assert median >= 4.0
    assert "budget 1 ms" in detail


def test_raising_model_fails_every_check_without_raising() -> None:
    def broken(df: pd.DataFrame) -> pd.DataFrame:
        raise RuntimeError("booster not loaded")

    results = run(broken)
    assert only_failed(results) == list(CHECK_NAMES)
    assert all("booster not loaded" in r.detail for r in results.values())


def test_model_failing_on_single_rows_only() -> None:
    def batch_only(df: pd.DataFrame) -> pd.DataFrame:
        if len(df) == 1:
            raise ValueError("need at least two rows")
        return regression_model(df)

    results = run(batch_only, task="regression", classes=None)
    assert only_failed(results) == ["single_row_equals_batch", "latency"]
    assert "need at least two rows" in results["latency"].detail


def test_wrong_output_shape_fails() -> None:
    def short(df: pd.DataFrame) -> pd.DataFrame:
        return regression_model(df).iloc[:-1]

    def not_a_frame(df: pd.DataFrame) -> pd.DataFrame:
        return regression_model(df)["prediction"].to_numpy()

    assert "rows for" in run(short, task="regression", classes=None)["finite"].detail
    assert "not a pandas DataFrame" in run(not_a_frame, task="regression", classes=None)["finite"].detail


def test_empty_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="no rows"):
        run_model_checks(regression_model, sample().iloc[:0], task="regression", classes=None,
                         latency_budget_ms=10)


def test_failed_checks_names_failures_in_order() -> None:
    results = [CheckResult("finite", True, ""), CheckResult("deterministic", False, "x"),
               CheckResult("latency", False, "y")]
    assert failed_checks(results) == ["deterministic", "latency"]
    assert failed_checks([]) == []
