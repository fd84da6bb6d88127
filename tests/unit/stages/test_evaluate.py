"""Unit tests for pipelines.stages.evaluate: metrics, confusion, slices and evaluate_frame."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from pipelines.stages.evaluate import (
    MISSING_SLICE,
    Evaluation,
    compute_metrics,
    confusion,
    evaluate_frame,
    slice_metrics,
)

CLASSES3 = ["a", "b", "c"]


def binary_frame() -> pd.DataFrame:
    """Ten rows; the label comes back from Parquet as floats while training saw ints."""
    y = [0, 0, 0, 0, 1, 1, 1, 1, 1, 0]
    p = [0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.2, 0.6, 0.55, 0.05]
    return pd.DataFrame({
        "y": np.array(y, dtype=float),
        "prediction": [int(v >= 0.5) for v in p],
        "probability": p,
    })


def multiclass_frame() -> pd.DataFrame:
    proba = np.array([
        [0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4],
        [0.1, 0.8, 0.1], [0.6, 0.1, 0.3], [0.2, 0.2, 0.6], [0.3, 0.6, 0.1], [0.25, 0.25, 0.5],
    ])
    y = ["a", "b", "c", "b", "c", "b", "a", "a", "b", "c"]
    frame = pd.DataFrame({
        "y": y,
        "prediction": [CLASSES3[i] for i in proba.argmax(axis=1)],
        "probability": proba.max(axis=1),
    })
    for i, c in enumerate(CLASSES3):
        frame[f"probability_{c}"] = proba[:, i]
    return frame


def regression_frame() -> pd.DataFrame:
    return pd.DataFrame({"y": [3.0, -0.5, 2.0, 7.0, 0.0], "prediction": [2.5, 0.0, 2.0, 8.0, 0.4]})


def approx(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# --------------------------------------------------------------------------- binary


def test_binary_metrics_match_sklearn() -> None:
    f = binary_frame()
    y = f["y"].astype(int).to_numpy()
    pred = f["prediction"].to_numpy()
    p = f["probability"].to_numpy()
    m = compute_metrics(f, target="y", task="binary", classes=[0, 1])
    assert approx(m["accuracy"], skm.accuracy_score(y, pred))
    assert approx(m["balanced_accuracy"], skm.balanced_accuracy_score(y, pred))
    assert approx(m["precision"], skm.precision_score(y, pred))
    assert approx(m["recall"], skm.recall_score(y, pred))
    assert approx(m["f1"], skm.f1_score(y, pred))
    assert approx(m["roc_auc"], skm.roc_auc_score(y, p))
    assert approx(m["pr_auc"], skm.average_precision_score(y, p))
    assert approx(m["log_loss"], skm.log_loss(y, p))
    per_class = skm.precision_recall_fscore_support(y, pred, labels=[0, 1])
    for i, c in enumerate(["0", "1"]):
        assert approx(m[f"precision_class_{c}"], per_class[0][i])
        assert approx(m[f"recall_class_{c}"], per_class[1][i])
        assert approx(m[f"f1_class_{c}"], per_class[2][i])


def test_binary_positive_class_is_the_second_class() -> None:
    f = pd.DataFrame({
        "y": ["no", "yes", "yes", "no"],
        "prediction": ["no", "yes", "no", "no"],
        "probability": [0.2, 0.9, 0.4, 0.3],
    })
    m = compute_metrics(f, target="y", task="binary", classes=["no", "yes"])
    assert m["precision"] == 1.0
    assert m["recall"] == 0.5
    assert approx(m["roc_auc"], 1.0)


def test_binary_labels_match_across_number_spellings() -> None:
    f = pd.DataFrame({"y": [1, 0, 1.0, 0.0], "prediction": [1.0, 0, 1, 0],
                      "probability": [0.9, 0.1, 0.8, 0.2]})
    m = compute_metrics(f, target="y", task="binary", classes=[0.0, 1.0])
    assert m["accuracy"] == 1.0


def test_binary_bool_labels() -> None:
    f = pd.DataFrame({"y": [True, False, True], "prediction": [True, False, False],
                      "probability": [0.9, 0.2, 0.4]})
    m = compute_metrics(f, target="y", task="binary", classes=[False, True])
    assert approx(m["accuracy"], 2 / 3)
    assert m["recall"] == 0.5


def test_binary_one_class_slice_gives_nan_not_errors() -> None:
    f = pd.DataFrame({"y": [0, 0, 0], "prediction": [0, 1, 0], "probability": [0.1, 0.7, 0.2]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(f, target="y", task="binary", classes=[0, 1])
    assert approx(m["accuracy"], 2 / 3)
    assert math.isnan(m["roc_auc"])
    assert math.isnan(m["pr_auc"])
    assert math.isnan(m["recall"])  # no positive rows
    assert m["precision"] == 0.0  # one predicted positive, wrong
    assert math.isfinite(m["log_loss"])


def test_binary_no_predicted_positive_gives_nan_precision() -> None:
    f = pd.DataFrame({"y": [0, 1, 0], "prediction": [0, 0, 0], "probability": [0.1, 0.4, 0.2]})
    m = compute_metrics(f, target="y", task="binary", classes=[0, 1])
    assert math.isnan(m["precision"])
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0
    assert approx(m["roc_auc"], 1.0)


def test_rows_without_label_are_left_out() -> None:
    f = binary_frame()
    with_missing = pd.concat([f, pd.DataFrame({"y": [np.nan], "prediction": [1], "probability": [0.9]})])
    assert compute_metrics(with_missing, target="y", task="binary", classes=[0, 1]) == pytest.approx(
        compute_metrics(f, target="y", task="binary", classes=[0, 1]), nan_ok=True
    )


def test_empty_frame_gives_nan_metrics() -> None:
    f = binary_frame().iloc[:0]
    m = compute_metrics(f, target="y", task="binary", classes=[0, 1])
    assert {"accuracy", "roc_auc", "f1", "log_loss", "f1_class_1"} <= set(m)
    assert all(math.isnan(v) for v in m.values())
    r = compute_metrics(regression_frame().iloc[:0], target="y", task="regression", classes=None)
    assert set(r) == {"rmse", "mae", "r2", "mape"} and all(math.isnan(v) for v in r.values())


def test_label_unseen_in_training_counts_as_error() -> None:
    f = pd.DataFrame({"y": [0, 1, 2], "prediction": [0, 1, 1], "probability": [0.1, 0.9, 0.8]})
    m = compute_metrics(f, target="y", task="binary", classes=[0, 1])
    assert approx(m["accuracy"], 2 / 3)
    assert math.isnan(m["log_loss"])


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="task"):
        compute_metrics(binary_frame(), target="y", task="ranking", classes=[0, 1])
    with pytest.raises(ValueError, match="classes"):
        compute_metrics(binary_frame(), target="y", task="binary", classes=None)
    with pytest.raises(ValueError, match="probability"):
        compute_metrics(binary_frame().drop(columns="probability"), target="y", task="binary",
                        classes=[0, 1])
    with pytest.raises(ValueError, match="probability_c"):
        compute_metrics(multiclass_frame().drop(columns="probability_c"), target="y",
                        task="multiclass", classes=CLASSES3)


# --------------------------------------------------------------------------- multiclass


def test_multiclass_metrics_match_sklearn() -> None:
    f = multiclass_frame()
    y, pred = f["y"].to_numpy(), f["prediction"].to_numpy()
    proba = f[[f"probability_{c}" for c in CLASSES3]].to_numpy()
    m = compute_metrics(f, target="y", task="multiclass", classes=CLASSES3)
    assert approx(m["accuracy"], skm.accuracy_score(y, pred))
    assert approx(m["balanced_accuracy"], skm.balanced_accuracy_score(y, pred))
    for name, fn in [("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)]:
        expected = fn(y, pred, average="macro")
        assert approx(m[name], expected)
        assert approx(m[f"{name}_macro"], expected)
        per_class = fn(y, pred, average=None, labels=CLASSES3)
        for i, c in enumerate(CLASSES3):
            assert approx(m[f"{name}_class_{c}"], per_class[i])
    assert approx(m["roc_auc"], skm.roc_auc_score(y, proba, multi_class="ovr", labels=CLASSES3))
    onehot = np.column_stack([(y == c).astype(int) for c in CLASSES3])
    assert approx(m["pr_auc"], skm.average_precision_score(onehot, proba, average="macro"))
    assert approx(m["log_loss"], skm.log_loss(y, proba, labels=CLASSES3))


def test_multiclass_never_predicted_class_is_penalised_in_macro() -> None:
    f = multiclass_frame()
    f["prediction"] = f["prediction"].replace({"c": "a"})
    m = compute_metrics(f, target="y", task="multiclass", classes=CLASSES3)
    y, pred = f["y"].to_numpy(), f["prediction"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert approx(m["f1_macro"], skm.f1_score(y, pred, average="macro"))
        assert approx(m["precision_macro"], skm.precision_score(y, pred, average="macro"))
    assert math.isnan(m["precision_class_c"])  # never predicted: undefined
    assert m["recall_class_c"] == 0.0
    assert m["f1_class_c"] == 0.0


def test_multiclass_one_class_slice() -> None:
    f = multiclass_frame()
    subset = f[f["y"] == "b"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(subset, target="y", task="multiclass", classes=CLASSES3)
    assert math.isnan(m["roc_auc"])
    assert math.isnan(m["recall_class_a"])
    assert approx(m["recall_class_b"], 0.75)
    assert approx(m["balanced_accuracy"], 0.75)
    assert math.isfinite(m["f1_macro"])
    assert math.isfinite(m["pr_auc"])  # class b has positives


def test_multiclass_integer_classes_read_back_as_floats() -> None:
    f = multiclass_frame()
    codes = {"a": 1, "b": 2, "c": 3}
    g = f.rename(columns={f"probability_{c}": f"probability_{codes[c]}" for c in CLASSES3})
    g["y"] = g["y"].map(codes).astype(float)
    g["prediction"] = g["prediction"].map(codes)
    m = compute_metrics(g, target="y", task="multiclass", classes=[1, 2, 3])
    expected = compute_metrics(f, target="y", task="multiclass", classes=CLASSES3)
    assert m["f1_macro"] == expected["f1_macro"]
    assert m["roc_auc"] == expected["roc_auc"]
    assert "f1_class_2" in m


def test_class_names_are_made_safe_for_metric_keys() -> None:
    f = pd.DataFrame({"y": ["a&b", "c"], "prediction": ["a&b", "c"], "probability": [0.3, 0.8]})
    m = compute_metrics(f, target="y", task="binary", classes=["a&b", "c"])
    assert "f1_class_a_b" in m


# --------------------------------------------------------------------------- regression


def test_regression_metrics_match_sklearn() -> None:
    f = regression_frame()
    y, p = f["y"].to_numpy(), f["prediction"].to_numpy()
    m = compute_metrics(f, target="y", task="regression", classes=None)
    assert approx(m["rmse"], math.sqrt(skm.mean_squared_error(y, p)))
    assert approx(m["mae"], skm.mean_absolute_error(y, p))
    assert approx(m["r2"], skm.r2_score(y, p))
    nonzero = y != 0
    assert approx(m["mape"], skm.mean_absolute_percentage_error(y[nonzero], p[nonzero]))


def test_regression_mape_nan_without_nonzero_targets_and_r2_nan_when_constant() -> None:
    f = pd.DataFrame({"y": [0.0, 0.0, 0.0], "prediction": [0.1, -0.2, 0.0]})
    m = compute_metrics(f, target="y", task="regression", classes=None)
    assert math.isnan(m["mape"])
    assert math.isnan(m["r2"])
    assert approx(m["mae"], 0.1)
    one = compute_metrics(f.iloc[:1], target="y", task="regression", classes=None)
    assert math.isnan(one["r2"]) and approx(one["rmse"], 0.1)


# --------------------------------------------------------------------------- confusion


def test_confusion_layout_rows_true_columns_predicted() -> None:
    f = pd.DataFrame({"y": ["a", "a", "b", "c", "c", "c"],
                      "prediction": ["a", "b", "b", "a", "c", "c"]})
    assert confusion(f, target="y", classes=["a", "b", "c"]) == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    # Order follows classes, not sorting.
    assert confusion(f, target="y", classes=["c", "b", "a"]) == [[2, 0, 1], [0, 1, 0], [0, 1, 1]]


def test_confusion_matches_sklearn_and_ignores_unknown_labels() -> None:
    f = multiclass_frame()
    expected = skm.confusion_matrix(f["y"], f["prediction"], labels=CLASSES3).tolist()
    assert confusion(f, target="y", classes=CLASSES3) == expected
    g = pd.concat([f, pd.DataFrame({"y": ["z", None], "prediction": ["a", "a"]})])
    assert confusion(g, target="y", classes=CLASSES3) == expected


def test_confusion_number_spellings() -> None:
    f = pd.DataFrame({"y": [1.0, 0.0, 1.0], "prediction": [1, 0, 0]})
    assert confusion(f, target="y", classes=[0, 1]) == [[1, 0], [1, 1]]


# --------------------------------------------------------------------------- slices


def sliced_frame(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    p = rng.random(rows)
    return pd.DataFrame({
        "y": (rng.random(rows) < p).astype(int),
        "prediction": (p >= 0.5).astype(int),
        "probability": p,
        "plan": rng.choice(np.array(["basic", "pro", None], dtype=object), rows, p=[0.6, 0.3, 0.1]),
        "age": rng.uniform(18, 80, rows),
        "seats": rng.choice([1, 2, 3], rows),
    })


def test_slices_by_value_with_missing_values() -> None:
    f = sliced_frame()
    out = slice_metrics(f, target="y", task="binary", classes=[0, 1], slices=["plan"], min_rows=5)
    assert list(out["plan"]) == ["basic", "pro", MISSING_SLICE]
    basic = f[f["plan"] == "basic"]
    assert out["plan"]["basic"]["rows"] == len(basic)
    assert out["plan"]["basic"] == compute_metrics(basic, target="y", task="binary", classes=[0, 1]) | {
        "rows": float(len(basic))
    }
    assert out["plan"][MISSING_SLICE]["rows"] == f["plan"].isna().sum()


def test_small_slices_report_rows_only() -> None:
    f = sliced_frame()
    out = slice_metrics(f, target="y", task="binary", classes=[0, 1], slices=["plan"], min_rows=20)
    missing = out["plan"][MISSING_SLICE]
    assert missing["rows"] < 20
    assert set(missing) == {"rows"}
    assert "roc_auc" in out["plan"]["basic"]


def test_numeric_slices_cut_into_quartiles_labelled_by_range() -> None:
    f = sliced_frame()
    out = slice_metrics(f, target="y", task="binary", classes=[0, 1], slices=["age"], min_rows=1)
    names = list(out["age"])
    assert len(names) == 4
    assert names[0].startswith("[") and all(n.startswith("(") for n in names[1:])
    lows = [float(n[1:].split(",")[0]) for n in names]
    assert lows == sorted(lows)
    assert sum(v["rows"] for v in out["age"].values()) == len(f)
    assert all(25 <= v["rows"] <= 35 for v in out["age"].values())


def test_numeric_slices_with_few_values_are_per_value_in_numeric_order() -> None:
    f = sliced_frame()
    f["seats"] = f["seats"].map({1: 2.0, 2: 10.0, 3: np.nan})
    out = slice_metrics(f, target="y", task="binary", classes=[0, 1], slices=["seats"], min_rows=1)
    assert list(out["seats"]) == ["2", "10", MISSING_SLICE]


def test_degenerate_slice_does_not_raise() -> None:
    f = sliced_frame(60)
    f["segment"] = np.where(f["y"] == 1, "buyers", "others")
    out = slice_metrics(f, target="y", task="binary", classes=[0, 1], slices=["segment"], min_rows=1)
    assert math.isnan(out["segment"]["buyers"]["roc_auc"])
    assert out["segment"]["buyers"]["accuracy"] >= 0


def test_missing_slice_column_raises() -> None:
    with pytest.raises(ValueError, match="nope"):
        slice_metrics(sliced_frame(), target="y", task="binary", classes=[0, 1], slices=["nope"])


def test_regression_slices() -> None:
    f = pd.DataFrame({"y": np.arange(40.0), "prediction": np.arange(40.0) + 1, "g": ["x", "y"] * 20})
    out = slice_metrics(f, target="y", task="regression", classes=None, slices=["g"], min_rows=10)
    assert out["g"]["x"]["rows"] == 20 and approx(out["g"]["x"]["mae"], 1.0)


# --------------------------------------------------------------------------- evaluate_frame


def is_png(path: Path) -> bool:
    return path.is_file() and len(path.read_bytes()) > 100 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_frame_binary_with_plots(tmp_path: Path) -> None:
    f = sliced_frame()
    ev = evaluate_frame(f, target="y", task="binary", classes=[0, 1], slices=["plan"],
                        plot_dir=tmp_path / "plots")
    assert isinstance(ev, Evaluation)
    assert ev.metrics == compute_metrics(f, target="y", task="binary", classes=[0, 1])
    assert ev.confusion == confusion(f, target="y", classes=[0, 1])
    assert set(ev.slices) == {"plan"}
    assert sorted(p.name for p in ev.plots) == ["calibration.png", "confusion.png", "roc_pr.png"]
    assert all(is_png(p) for p in ev.plots)


def test_evaluate_frame_multiclass_with_plots(tmp_path: Path) -> None:
    ev = evaluate_frame(multiclass_frame(), target="y", task="multiclass", classes=CLASSES3,
                        plot_dir=tmp_path)
    assert len(ev.confusion or []) == 3
    assert len(ev.plots) == 3 and all(is_png(p) for p in ev.plots)


def test_evaluate_frame_regression(tmp_path: Path) -> None:
    ev = evaluate_frame(regression_frame(), target="y", task="regression", classes=None,
                        plot_dir=tmp_path)
    assert ev.confusion is None
    assert [p.name for p in ev.plots] == ["residuals.png"] and is_png(ev.plots[0])
    assert ev.slices == {}


def test_evaluate_frame_without_plot_dir_writes_nothing(tmp_path: Path) -> None:
    ev = evaluate_frame(binary_frame(), target="y", task="binary", classes=[0, 1], plot_dir=None)
    assert ev.plots == []
    empty = evaluate_frame(binary_frame().iloc[:0], target="y", task="binary", classes=[0, 1],
                           plot_dir=tmp_path)
    assert empty.plots == [] and empty.confusion == [[0, 0], [0, 0]]
