"""Every model family on every task, on small arrays, without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.families import FitContext, TrainData, get_family, load_predictor
from pipelines.families.base import Standardizer, score
from pipelines.families.registry import write_family_marker

SETTINGS = {
    "xgboost": {"num_boost_round": 30, "early_stopping_rounds": 10},
    "mlp": {"max_epochs": 15, "patience": 3, "batch_size": 64, "num_layers": 2},
    "linear": {},
}


def _data(task: str, n: int = 600, seed: int = 0) -> tuple[TrainData, TrainData]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[rng.random(n) < 0.05, 2] = np.nan  # families must cope with missing features
    signal = X[:, 0] + 0.5 * X[:, 1]
    if task == "binary":
        y = (signal + rng.normal(scale=0.5, size=n) > 0).astype(float)
    elif task == "multiclass":
        y = np.digitize(signal, [-0.5, 0.5]).astype(float)
    else:
        y = 3 * signal + rng.normal(scale=0.3, size=n)
    names = ["a", "b", "c", "d"]
    cut = int(n * 0.75)
    return TrainData(X[:cut], y[:cut], names), TrainData(X[cut:], y[cut:], names)


def _baseline(task: str, valid: TrainData, train: TrainData) -> float:
    """Score of predicting the training prior: every family must beat it."""
    metric = "rmse" if task == "regression" else "logloss"
    if task == "regression" or task == "binary":
        raw = np.full(len(valid.y), train.y.mean())
    else:
        prior = np.bincount(train.y.astype(int), minlength=3) / len(train.y)
        raw = np.tile(prior, (len(valid.y), 1))
    return score(metric, task, valid.y, raw)


@pytest.mark.parametrize("family", ["xgboost", "mlp", "linear"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_family_learns_saves_and_loads(family: str, task: str, tmp_path: Path) -> None:
    train, valid = _data(task)
    reports: list[dict[str, Any]] = []
    metric = "rmse" if task == "regression" else "logloss"
    ctx = FitContext(task=task, num_classes=3 if task == "multiclass" else 2, metric=metric,
                     report=reports.append, settings=SETTINGS[family])
    fam = get_family(family)
    result = fam.fit({}, train, valid, ctx)
    assert result.score < 0.8 * _baseline(task, valid, train)
    assert reports and all(metric in r for r in reports)
    fam.save(result.model, tmp_path)
    write_family_marker(tmp_path, family)
    loaded = load_predictor(tmp_path)
    raw = loaded.predict_raw(valid.X)
    assert score(metric, task, valid.y, raw) == pytest.approx(result.score, rel=1e-5)
    if task == "multiclass":
        assert raw.shape == (len(valid.y), 3)
        np.testing.assert_allclose(raw.sum(axis=1), 1.0, rtol=1e-6)
    else:
        assert raw.shape == (len(valid.y),)
    if task == "binary":
        assert ((raw >= 0) & (raw <= 1)).all()
    importances = fam.importances(result.model, train.feature_names)
    assert set(importances) == set(train.feature_names)
    assert max(importances, key=importances.__getitem__) in ("a", "b")


def test_unknown_family_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model family 'forest'"):
        get_family("forest")


def test_standardizer_fills_and_scales_from_train_only() -> None:
    X = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]])
    s = Standardizer.fit(X)
    out = s.apply(np.array([[3.0, np.nan]]))
    assert out[0, 0] == pytest.approx(0.0)
    assert out[0, 1] == pytest.approx(0.0)  # the NaN took the training median (3.0) = mean
    assert not np.isnan(s.apply(X)).any()


@pytest.mark.parametrize(("metric", "task"), [("auc", "regression"), ("rmse", "binary"),
                                              ("f2", "binary")])
def test_metric_must_fit_the_task(metric: str, task: str) -> None:
    from pipelines.families.base import check_metric

    with pytest.raises(ValueError, match=r"train\.metric"):
        check_metric(metric, task)


def test_xgboost_uses_the_trials_threads_whatever_openmp_was_set_to() -> None:
    """A pooled Ray worker can hold an OpenMP runtime set to one thread by an earlier 1-CPU
    task; XGBoost never exceeds OpenMP's count, so the fit must set it to ``ctx.threads``."""
    import xgboost  # noqa: F401  # load its OpenMP runtime before limiting it
    from threadpoolctl import threadpool_info, threadpool_limits

    seen: list[int] = []

    def report(_: dict[str, float]) -> None:
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp")

    train, valid = _data("binary")
    ctx = FitContext(task="binary", num_classes=2, metric="logloss", report=report, threads=2,
                     settings=SETTINGS["xgboost"])
    with threadpool_limits(limits=1, user_api="openmp"):
        get_family("xgboost").fit({}, train, valid, ctx)
        after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]
    assert seen and set(seen) == {2}
    assert set(after) == {1}  # the caller's setting is restored afterwards
