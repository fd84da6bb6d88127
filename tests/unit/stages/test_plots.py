"""Unit tests for pipelines.stages.plots: every plot writes a non-empty PNG, also on odd input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.stages import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, expected: Path) -> None:
    assert path == expected
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC


@pytest.fixture(autouse=True)
def no_pyplot_figures_left() -> object:
    yield
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_roc_pr_binary(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200)
    y = np.where(rng.random(200) < p, "yes", "no")
    out = tmp_path / "sub" / "roc_pr.png"
    assert_png(plots.roc_pr_curves(y, p, ["no", "yes"], out), out)


def test_roc_pr_binary_two_column_matrix(tmp_path: Path) -> None:
    p = np.array([0.1, 0.8, 0.4, 0.7])
    out = tmp_path / "roc.png"
    assert_png(plots.roc_pr_curves([0, 1, 0, 1], np.column_stack([1 - p, p]), [0, 1], out), out)


def test_roc_pr_multiclass(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], 150)
    y = np.array(["a", "b", "c"])[proba.argmax(axis=1)]
    out = tmp_path / "roc.png"
    assert_png(plots.roc_pr_curves(y, proba, ["a", "b", "c"], out), out)


def test_roc_pr_undefined_curves_do_not_raise(tmp_path: Path) -> None:
    out = tmp_path / "roc.png"
    assert_png(plots.roc_pr_curves([0, 0, 0], np.array([0.1, np.nan, 0.3]), [0, 1], out), out)


def test_confusion_plot(tmp_path: Path) -> None:
    out = tmp_path / "confusion.png"
    assert_png(plots.confusion_plot([[5, 1, 0], [2, 7, 1], [0, 0, 0]], ["a", "b", "c"], out), out)


def test_confusion_plot_many_classes(tmp_path: Path) -> None:
    k = 30
    out = tmp_path / "confusion.png"
    assert_png(plots.confusion_plot(np.eye(k, dtype=int).tolist(), list(range(k)), out), out)


def test_calibration_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    p = rng.random(300)
    out = tmp_path / "calibration.png"
    assert_png(plots.calibration_plot((rng.random(300) < p).astype(int), p, out), out)


def test_calibration_plot_degenerate(tmp_path: Path) -> None:
    out = tmp_path / "calibration.png"
    assert_png(plots.calibration_plot([], np.array([]), out), out)
    assert_png(plots.calibration_plot([1, 1], np.array([1.0, np.nan]), out), out)


def test_residual_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=100)
    out = tmp_path / "residuals.png"
    assert_png(plots.residual_plot(y, y + rng.normal(scale=0.1, size=100), out), out)


def test_residual_plot_empty(tmp_path: Path) -> None:
    out = tmp_path / "residuals.png"
    assert_png(plots.residual_plot(np.array([]), np.array([]), out), out)


def test_feature_importance_plot_keeps_top(tmp_path: Path) -> None:
    importances = {f"f{i}": float(i) for i in range(40)}
    out = tmp_path / "importance.png"
    assert_png(plots.feature_importance_plot(importances, out, top=5), out)


def test_feature_importance_plot_empty(tmp_path: Path) -> None:
    out = tmp_path / "importance.png"
    assert_png(plots.feature_importance_plot({}, out), out)
