"""Every model family on every task, on small arrays, without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.families import FitContext, TrainData, get_family, load_predictor
from pipelines.families.base import Standardizer, score
from pipelines.families.registry import write_family_marker
from pipelines.families.xgb import MODEL_FILE

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
    write_family_marker(tmp_path, fam)
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
    importances = fam.importances(loaded, train.feature_names)
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


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_xgboost_fits_the_same_model_from_its_float32_input(task: str, tmp_path: Path) -> None:
    """The train stage hands XGBoost float32 features (``input_dtype``): a DMatrix stores
    float32 anyway, so the model must be the very one a float64 matrix gives."""
    fam = get_family("xgboost")
    assert fam.input_dtype is np.float32
    train, valid = _data(task)
    # Values that float32 cannot hold exactly, so that the cast itself is exercised.
    train = TrainData(train.X * np.pi, train.y, train.feature_names)
    valid = TrainData(valid.X * np.pi, valid.y, valid.feature_names)

    def model_bytes(dtype: type[np.floating], where: Path) -> bytes:
        ctx = FitContext(task=task, num_classes=3 if task == "multiclass" else 2,
                         metric="rmse" if task == "regression" else "logloss",
                         report=lambda _: None, settings=SETTINGS["xgboost"])
        cast = [TrainData(d.X.astype(dtype), d.y, d.feature_names) for d in (train, valid)]
        where.mkdir()
        fam.save(fam.fit({}, cast[0], cast[1], ctx).model, where)
        return (where / MODEL_FILE).read_bytes()

    assert model_bytes(np.float32, tmp_path / "f32") == model_bytes(np.float64, tmp_path / "f64")


@pytest.mark.parametrize("stop_at", [4, 9, 12])
def test_mlp_epoch_loop_resumed_from_a_snapshot_ends_exactly_as_uninterrupted(
        stop_at: int, tmp_path: Path) -> None:
    """A data-parallel MLP worker group restarted after a failure continues from rank 0's
    last snapshot; the loop must then end where it would have without the interruption."""
    import torch

    from pipelines.families.mlp import build_mlp, load_train_state, save_train_state, train_epochs

    train, valid = _data("binary", n=400)
    X = torch.as_tensor(np.nan_to_num(train.X), dtype=torch.float32)
    y = torch.as_tensor(train.y, dtype=torch.float32).reshape(-1, 1)
    Xv = torch.as_tensor(np.nan_to_num(valid.X), dtype=torch.float32)
    yv = torch.as_tensor(valid.y, dtype=torch.float32).reshape(-1, 1)

    def run(resume: dict[str, Any] | None = None, save_after: int = 0
            ) -> tuple[dict[str, Any], int, list[float]]:
        torch.manual_seed(0)
        model = build_mlp(n_in=X.shape[1], n_out=1, hidden_size=16, num_layers=2, dropout=0.1)
        losses: list[float] = []

        def valid_loss() -> float:
            model.eval()
            with torch.no_grad():
                return float(torch.nn.functional.binary_cross_entropy_with_logits(model(Xv), yv))

        def on_epoch(epoch: int, loss: float, snapshot: Any) -> None:
            losses.append(loss)
            if epoch == save_after:
                save_train_state(snapshot(), tmp_path)
                raise KeyboardInterrupt  # the worker dies right after its checkpoint

        try:
            # Early stopping ends this loop after 12 epochs, the best at 10: the cases resume
            # before the best, after it while waiting, and at the stopping epoch itself.
            best, epochs = train_epochs(model, X, y, valid_loss, task="binary", lr=0.003,
                                        weight_decay=0.0, batch_size=32, max_epochs=40,
                                        patience=2, seed=3, on_epoch=on_epoch, resume=resume)
        except KeyboardInterrupt:
            return {}, 0, losses
        return best, epochs, losses

    whole, whole_epochs, whole_losses = run()
    assert (len(whole_losses), whole_epochs) == (12, 10)  # so every case below is what it says
    _, _, first_losses = run(save_after=stop_at)
    state = load_train_state(tmp_path)
    assert state is not None and state["epoch"] == stop_at
    resumed, resumed_epochs, rest = run(resume=state)
    assert first_losses + rest == whole_losses  # the same epochs, bit for bit
    assert resumed_epochs == whole_epochs
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
    assert load_train_state(tmp_path / "nothing") is None


@pytest.mark.parametrize("classes", [1, 3])
def test_linear_prediction_of_a_row_does_not_depend_on_the_rows_scored_with_it(
        classes: int) -> None:
    """Batch blocks, online requests and pyfunc score the same row among different rows;
    a BLAS product gave one row a result 1 ULP apart between two of them (CI, 2026-11-27)."""
    from pipelines.families.linear import row_wise_affine

    rng = np.random.default_rng(5)
    X = rng.normal(size=(1037, 23))
    coef, intercept = rng.normal(size=(classes, 23)), rng.normal(size=classes)
    whole = row_wise_affine(X, coef, intercept)
    np.testing.assert_allclose(whole, X @ coef.T + intercept, rtol=1e-12, atol=1e-12)
    for size in (1, 7, 64, 225, 1000):
        parts = np.concatenate([row_wise_affine(X[i:i + size], coef, intercept)
                                for i in range(0, len(X), size)])
        np.testing.assert_array_equal(parts, whole)
    # Not contiguous (a column slice of a wider frame's matrix): the same bits.
    wide = np.hstack([X, X])[:, :23]
    np.testing.assert_array_equal(row_wise_affine(wide, coef, intercept), whole)
