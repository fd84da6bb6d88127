"""XGBoost family: gradient-boosted trees, early stopping on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines.families.base import (
    BaseFamily,
    FitContext,
    FitResult,
    NativeModel,
    TrainData,
    score,
)

__all__ = ["XGBoostFamily", "objective_params", "round_metric"]

REPORT_EVERY = 10
MODEL_FILE = "model.ubj"


def objective_params(task: str, num_classes: int) -> dict[str, Any]:
    if task == "binary":
        return {"objective": "binary:logistic"}
    if task == "multiclass":
        return {"objective": "multi:softprob", "num_class": num_classes}
    return {"objective": "reg:squarederror"}


def round_metric(metric: str, task: str) -> tuple[str, bool]:
    """The XGBoost eval metric that tracks ``metric`` per round, and whether to flip it."""
    if metric == "logloss":
        return ("mlogloss" if task == "multiclass" else "logloss"), False
    if metric == "accuracy":  # XGBoost tracks the error rate; report 1 - error
        return ("merror" if task == "multiclass" else "error"), True
    return metric, False  # auc, rmse, mae are native


class _Predictor:
    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        import xgboost

        names = self.booster.feature_names
        return np.asarray(self.booster.predict(xgboost.DMatrix(X, feature_names=names)))


class XGBoostFamily(BaseFamily):
    name = "xgboost"
    libraries: tuple[str, ...] = ("xgboost",)
    data_parallel = "xgboost"
    # A DMatrix holds float32 values whatever it is built from, so a float32 matrix gives the
    # same model; at 1M x 30 it is 120 MB less memory to fault in before the fit (0.1-0.2 s
    # here, where fresh pages are slow after a previous fit's memory was given back).
    input_dtype: type[np.floating] = np.float32
    # Histograms are summed in a fixed order whatever the thread count: 1, 2, 3 and 4 threads
    # gave the same bytes (400k x 30 with NaNs, row and column subsampling); a test keeps it so.
    thread_invariant = True

    def dmatrix(self, data: TrainData) -> Any:
        import xgboost

        return xgboost.DMatrix(data.X, label=data.y, feature_names=data.feature_names,
                               nthread=-1)

    def fit(self, params: dict[str, Any], train: TrainData, valid: TrainData,
            ctx: FitContext) -> FitResult:
        from threadpoolctl import threadpool_limits

        # A pooled Ray worker keeps the OpenMP thread count of the first task that loaded
        # xgboost's OpenMP runtime (Ray sets OMP_NUM_THREADS to that task's CPUs, 1 for most
        # tasks), and XGBoost never runs more threads than OpenMP allows, whatever ``nthread``
        # says: a 2-CPU fit in such a worker trained on one core (13.6 s instead of 7.6 s on
        # 1M x 30 here). Setting the OpenMP count for the fit makes ``ctx.threads`` hold.
        with threadpool_limits(limits=ctx.threads, user_api="openmp"):
            return self.fit_dmatrix(params, self.dmatrix(train), self.dmatrix(valid), valid.y,
                                    ctx)

    def fit_dmatrix(self, params: dict[str, Any], dtrain: Any, dvalid: Any, y_valid: np.ndarray,
                    ctx: FitContext) -> FitResult:
        """Train with early stopping; the returned booster is cut at its best round."""
        import xgboost

        eval_metric, flip = round_metric(ctx.metric, ctx.task)
        settings = {"num_boost_round": 200, "early_stopping_rounds": 20, "checkpoint_every": 50,
                    **ctx.settings}
        settings.pop("global_score", None)
        every = int(settings["checkpoint_every"])
        # Resuming: XGBoost numbers the rounds on from the given model's, so reports,
        # checkpoints and the best round stay absolute; early stopping counts from the resume
        # (a best round before the checkpoint is kept only if no later round beats it).
        done = ctx.init_model.num_boosted_rounds() if ctx.init_model is not None else 0

        class _Report(xgboost.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                if (epoch + 1) % REPORT_EVERY == 0:
                    value = float(evals_log["valid"][eval_metric][-1])
                    metrics = {ctx.metric: 1 - value if flip else value, "round": epoch + 1}
                    if ctx.checkpoint is not None and (epoch + 1) % every == 0:
                        ctx.checkpoint(model, metrics)
                    else:
                        ctx.report(metrics)
                return False

        full = {
            **objective_params(ctx.task, ctx.num_classes), "tree_method": "hist",
            "seed": ctx.seed, "nthread": ctx.threads, **params, "eval_metric": eval_metric,
        }
        if ctx.use_gpu:
            full["device"] = "cuda"
        booster = xgboost.train(
            full, dtrain, num_boost_round=max(0, int(settings["num_boost_round"]) - done),
            xgb_model=ctx.init_model, evals=[(dvalid, "valid")],
            early_stopping_rounds=int(settings["early_stopping_rounds"]),
            verbose_eval=False, callbacks=[_Report()],
        )
        best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
        best_value = float(getattr(booster, "best_score", float("nan")))
        booster = booster[: best + 1]  # slicing drops best_score, so it is read first
        if ctx.settings.get("global_score"):
            # Data-parallel: each worker holds a shard of the validation split, but XGBoost's
            # eval metric is all-reduced, so every worker reports the same, global value.
            value = best_value
            return FitResult(booster, 1 - value if flip else value, best + 1)
        raw = booster.predict(dvalid)
        return FitResult(booster, score(ctx.metric, ctx.task, y_valid, raw), best + 1)

    def save(self, model: Any, directory: Path) -> None:
        model.save_model(str(directory / MODEL_FILE))

    def load(self, directory: Path) -> _Predictor:
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(directory / MODEL_FILE))
        # One thread per predictor: batch actors and Serve replicas scale out by processes.
        booster.set_param({"nthread": 1})
        return _Predictor(booster)

    def importances(self, predictor: Any, feature_names: list[str]) -> dict[str, float]:
        gain = predictor.booster.get_score(importance_type="gain")
        return {n: float(gain.get(n, 0.0)) for n in feature_names}

    def native_model(self, predictor: Any, feature_names: list[str]) -> NativeModel:
        """The booster itself (``mlflow.xgboost``), named features and all."""
        return NativeModel("xgboost", predictor.booster, requirements=("xgboost",))

    def contributions(self, predictor: Any, X: np.ndarray) -> np.ndarray:
        """XGBoost's own TreeSHAP values (``pred_contribs``): exact for trees, bias last."""
        import xgboost

        booster = predictor.booster  # the family's predictor or the in-place twin: both hold it
        matrix = xgboost.DMatrix(X, feature_names=booster.feature_names)
        return np.asarray(booster.predict(matrix, pred_contribs=True), dtype=np.float64)

    def fixed_iterations(self, settings: dict[str, Any], iterations: int) -> dict[str, Any]:
        return {**settings, "num_boost_round": iterations, "early_stopping_rounds": iterations + 1}
