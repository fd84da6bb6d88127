"""k-fold cross-validation of one trial, for small data sets.

On a few hundred rows the validation split is tiny (86 rows of the 569-row breast-cancer
set), and ranking trials on it is ranking them mostly by noise: the trial with the best
validation logloss there scored a lower test ROC AUC than XGBoost's defaults. Scoring each
trial by the mean over k folds of train + valid uses every labelled non-test row for both
fitting and scoring; the winner is then refitted on train + valid (see ``train._refit``) for
the mean of the folds' early-stopped rounds, the way ``xgboost.cv`` and scikit-learn's
``GridSearchCV`` are used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipelines.families import Family, FitContext, FitResult, TrainData

__all__ = ["CrossValidatedResult", "cross_validated_fit", "curve_recorder", "fold_indices",
           "use_cross_validation"]


@dataclass
class CrossValidatedResult(FitResult):
    curve: list[tuple[int, float]] = field(default_factory=list)
    """The folds' mean validation metric per reported round (every 10 boosting rounds, every
    epoch), over the rounds every fold reached: the trial's learning curve."""


def curve_recorder(curve: dict[int, float], metric: str) -> Callable[[dict[str, Any]], None]:
    """A fit's ``report`` that keeps ``metric`` by ``round`` in ``curve``."""

    def record(metrics: dict[str, Any]) -> None:
        if "round" in metrics and metrics.get(metric) is not None:
            curve[int(metrics["round"])] = float(metrics[metric])

    return record


def _mean_curve(curves: list[dict[int, float]]) -> list[tuple[int, float]]:
    rounds = set.intersection(*(set(c) for c in curves)) if curves else set()
    return [(r, float(np.mean([c[r] for c in curves]))) for r in sorted(rounds)]


def use_cross_validation(folds: int, max_rows: int, train: TrainData, valid: TrainData) -> bool:
    """Cross-validate when asked for (``folds`` > 1) and train + valid is small enough that a
    k-fold sweep costs little; above ``max_rows`` the validation split alone is large enough
    to rank trials."""
    rows = len(train.y) + len(valid.y)
    return folds > 1 and rows <= max_rows and rows >= 2 * folds


def fold_indices(y: np.ndarray, folds: int, *, classification: bool,
                 seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, score rows) per fold; stratified by class for classification, as long as
    every class has at least ``folds`` rows (otherwise plain shuffled folds)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    x = np.zeros(len(y))
    if classification and np.unique(y, return_counts=True)[1].min() >= folds:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(x, y))
    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(x))


def _rows(data: TrainData, index: np.ndarray) -> TrainData:
    return TrainData(np.ascontiguousarray(data.X[index]), data.y[index], data.feature_names)


def cross_validated_fit(family: Family, params: dict[str, Any], train: TrainData,
                        valid: TrainData, ctx: FitContext, folds: int) -> CrossValidatedResult:
    """Fit ``family`` once per fold of train + valid, each fold early-stopping on its own
    held-out rows. The score is the folds' mean, the iterations their rounded mean; the
    model is the first fold's (the sweep refits the winner on train + valid); the curve the
    folds' mean per round."""
    pooled = TrainData(np.concatenate([train.X, valid.X]), np.concatenate([train.y, valid.y]),
                       train.feature_names)
    # Per-round reports from k interleaved fits would give a scheduler k curves as one;
    # a cross-validated trial reports once, at the end, with the folds' mean curve.
    curves: list[dict[int, float]] = []
    results = []
    for fit, score in fold_indices(pooled.y, folds, classification=ctx.task != "regression",
                                   seed=ctx.seed):
        curves.append({})
        quiet = replace(ctx, report=curve_recorder(curves[-1], ctx.metric))
        results.append(family.fit(params, _rows(pooled, fit), _rows(pooled, score), quiet))
    return CrossValidatedResult(
        model=results[0].model,
        score=float(np.mean([r.score for r in results])),
        iterations=max(1, round(float(np.mean([r.iterations for r in results])))),
        curve=_mean_curve(curves),
    )
