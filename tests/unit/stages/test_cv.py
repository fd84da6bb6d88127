"""Cross-validated trials: folds cover train + valid exactly once and scores are averaged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.families import FitContext, FitResult, TrainData
from pipelines.stages.cv import cross_validated_fit, fold_indices, use_cross_validation


def _data(n: int, start: int = 0) -> TrainData:
    x = np.arange(start, start + n, dtype=np.float64).reshape(-1, 1)
    return TrainData(x, (np.arange(start, start + n) % 3 == 0).astype(np.float64), ["f"])


class _Recorder:
    """A family that remembers what each fit saw and scores a fold by its held-out rows."""

    name = "recorder"

    def __init__(self) -> None:
        self.fits: list[tuple[np.ndarray, np.ndarray]] = []

    def fit(self, params: dict[str, Any], train: TrainData, valid: TrainData,
            ctx: FitContext) -> FitResult:
        ctx.report({"logloss": 1.0})
        self.fits.append((train.X[:, 0].copy(), valid.X[:, 0].copy()))
        return FitResult(model=len(self.fits), score=float(valid.X.mean()),
                         iterations=10 * len(self.fits))

    def save(self, model: Any, directory: Path) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    def load(self, directory: Path) -> Any:  # pragma: no cover - not used
        raise NotImplementedError


def test_every_pooled_row_is_scored_exactly_once_and_never_fitted_on_in_its_fold() -> None:
    fam, reports = _Recorder(), []
    ctx = FitContext(task="binary", num_classes=2, metric="logloss", report=reports.append)
    result = cross_validated_fit(fam, {}, _data(40), _data(20, start=40), ctx, folds=5)
    scored = np.concatenate([valid for _, valid in fam.fits])
    assert sorted(scored.tolist()) == list(range(60))
    for fitted, valid in fam.fits:
        assert not set(fitted) & set(valid)
        assert len(fitted) + len(valid) == 60
    assert result.score == np.mean([valid.mean() for _, valid in fam.fits])
    assert result.iterations == 30  # mean of 10, 20, 30, 40, 50
    assert result.model == 1
    assert reports == []  # folds do not report per round to the scheduler


def test_classification_folds_keep_the_class_balance() -> None:
    y = np.array([0] * 80 + [1] * 20)
    for fit, score in fold_indices(y, 5, classification=True, seed=0):
        assert y[score].sum() == 4 and len(score) == 20
        assert y[fit].sum() == 16


def test_a_class_too_rare_to_stratify_falls_back_to_plain_folds() -> None:
    y = np.array([0] * 20 + [1] * 2)
    folds = fold_indices(y, 5, classification=True, seed=0)
    assert sorted(np.concatenate([s for _, s in folds]).tolist()) == list(range(22))


def test_folds_are_reproducible_from_the_seed() -> None:
    y = np.arange(50) % 2
    a = fold_indices(y, 5, classification=True, seed=3)
    b = fold_indices(y, 5, classification=True, seed=3)
    c = fold_indices(y, 5, classification=True, seed=4)
    assert all((x[1] == z[1]).all() for x, z in zip(a, b, strict=True))
    assert any((x[1] != z[1]).any() for x, z in zip(a, c, strict=True))


def test_cross_validation_only_for_small_data_and_more_than_one_fold() -> None:
    small, big = _data(100), _data(30_000)
    assert use_cross_validation(5, 20_000, small, small)
    assert not use_cross_validation(1, 20_000, small, small)
    assert not use_cross_validation(5, 20_000, big, small)
    assert not use_cross_validation(5, 20_000, _data(3), _data(2))  # fewer rows than 2 x folds


class _Curves(_Recorder):
    """Each fold reports a curve: fold k reports rounds 10..10*(k+3), value round/100 + k."""

    def fit(self, params: dict[str, Any], train: TrainData, valid: TrainData,
            ctx: FitContext) -> FitResult:
        k = len(self.fits)
        for r in range(10, 10 * (k + 4), 10):
            ctx.report({"logloss": r / 100 + k, "round": r})
        return super().fit(params, train, valid, replace(ctx, report=lambda m: None))


def test_the_trial_s_curve_is_the_folds_mean_over_the_rounds_all_reached() -> None:
    reports: list[dict[str, Any]] = []
    ctx = FitContext(task="binary", num_classes=2, metric="logloss", report=reports.append)
    result = cross_validated_fit(_Curves(), {}, _data(40), _data(20, start=40), ctx, folds=4)
    # Folds 0-3 add 0, 1, 2, 3: the mean adds 1.5; fold 0 stopped after round 30.
    assert result.curve == [(10, pytest.approx(1.6)), (20, pytest.approx(1.7)),
                            (30, pytest.approx(1.8))]
    assert reports == []
