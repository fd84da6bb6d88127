"""Linear baseline: logistic regression (classification) or ridge (regression).

Fitted with scikit-learn on standardised features; stored as plain JSON coefficients, so
loading it runs no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.families.base import (
    BaseFamily,
    FitContext,
    FitResult,
    NativeModel,
    Standardizer,
    TrainData,
    score,
)

__all__ = ["LinearFamily", "row_wise_affine"]

MODEL_FILE = "linear.json"
SCALER_FILE = "scaler.json"


def row_wise_affine(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """``X @ coef.T + intercept``, each row's sum taken feature by feature in one fixed order.

    BLAS picks its kernels by the matrix's shape, so ``X @ coef.T`` can give a row a result
    one unit in the last place apart depending on how many rows it was scored with (seen: a
    batch block against the same rows through ``mlflow.pyfunc``). Summing column by column
    makes a row's prediction depend on that row alone, so batch, online and pyfunc agree
    to the bit; for a linear model's few dozen features the cost is small.
    """
    coef = np.atleast_2d(coef)
    z = np.empty((X.shape[0], coef.shape[0]), dtype=np.float64)
    z[:] = intercept
    for j in range(coef.shape[1]):
        z += X[:, j:j + 1] * coef[:, j]
    return z


class _Linear:
    def __init__(self, task: str, coef: np.ndarray, intercept: np.ndarray,
                 scaler: Standardizer) -> None:
        self.task, self.coef, self.intercept, self.scaler = task, coef, intercept, scaler

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        z = row_wise_affine(self.scaler.apply(X), self.coef, self.intercept)
        if self.task == "regression":
            return np.asarray(z).reshape(-1)
        if self.task == "binary":
            return np.asarray(1 / (1 + np.exp(-z.reshape(-1))))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))


class LinearFamily(BaseFamily):
    name = "linear"
    libraries: tuple[str, ...] = ("sklearn.linear_model",)
    requirements: tuple[str, ...] = ("scikit-learn",)
    input_dtype: type[np.floating] = np.float64

    def fit(self, params: dict[str, Any], train: TrainData, valid: TrainData,
            ctx: FitContext) -> FitResult:
        from sklearn.linear_model import LogisticRegression, Ridge

        scaler = Standardizer.fit(train.X, scale=not ctx.settings.get("prescaled"))
        X = scaler.apply(train.X)
        c = float(params.get("C", 1.0))
        if ctx.task == "regression":
            est = Ridge(alpha=1.0 / c, random_state=ctx.seed).fit(X, train.y)
            coef, intercept = np.atleast_2d(est.coef_), np.atleast_1d(est.intercept_)
        else:
            est = LogisticRegression(C=c, max_iter=int(params.get("max_iter", 500)),
                                     random_state=ctx.seed).fit(X, train.y.astype(int))
            coef, intercept = est.coef_, est.intercept_
        model = _Linear(ctx.task, coef, intercept, scaler)
        result = score(ctx.metric, ctx.task, valid.y, model.predict_raw(valid.X))
        ctx.report({ctx.metric: result, "round": 1})
        return FitResult(model, result, 1)

    def save(self, model: Any, directory: Path) -> None:
        (directory / MODEL_FILE).write_text(json.dumps({
            "task": model.task, "coef": model.coef.tolist(),
            "intercept": model.intercept.tolist(),
        }))
        model.scaler.save(directory / SCALER_FILE)

    def load(self, directory: Path) -> _Linear:
        raw = json.loads((directory / MODEL_FILE).read_text())
        return _Linear(raw["task"], np.asarray(raw["coef"]), np.asarray(raw["intercept"]),
                       Standardizer.load(directory / SCALER_FILE))

    def native_model(self, predictor: Any, feature_names: list[str]) -> NativeModel:
        """An sklearn ``Pipeline``: median-fill, scale, then the logistic regression or ridge.

        Each step is fitted on a one-row placeholder of the right width (so that sklearn
        marks it fitted, with the feature names) and then given the values this model learnt.
        It agrees with the family to rounding (sklearn sums ``X @ coef.T`` by BLAS, see
        :func:`row_wise_affine`). Classifiers are logged with ``predict_proba`` as their
        pyfunc prediction: one probability column per class.
        """
        import pandas as pd
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        scaler: Standardizer = predictor.scaler
        coef, intercept = np.atleast_2d(predictor.coef), np.atleast_1d(predictor.intercept)
        regression = predictor.task == "regression"
        k = 1 if regression else max(coef.shape[0], 2)
        placeholder = pd.DataFrame([scaler.fill] * k, columns=feature_names, dtype="float64")
        pipe = Pipeline([("fill", SimpleImputer(strategy="median")),  # its medians: the fill
                         ("scale", StandardScaler()),
                         ("model", Ridge() if regression else LogisticRegression())])
        pipe.fit(placeholder, [0.0] if regression else np.arange(k))
        scale, est = pipe.named_steps["scale"], pipe.named_steps["model"]
        scale.mean_, scale.scale_ = np.asarray(scaler.mean), np.asarray(scaler.std)
        scale.var_ = scale.scale_ ** 2
        est.coef_ = coef[0].copy() if regression else coef.copy()
        est.intercept_ = float(intercept[0]) if regression else intercept.copy()
        # MLflow stores sklearn models with skops, which loads only the types it is told to
        # trust; the imputer records the dtype it was fitted on.
        args: dict[str, Any] = {"skops_trusted_types": ["numpy.dtype"]}
        if predictor.task != "regression":
            args["pyfunc_predict_fn"] = "predict_proba"
        return NativeModel("sklearn", pipe, requirements=("scikit-learn",), log_args=args)

    def contributions(self, predictor: Any, X: np.ndarray) -> np.ndarray:
        """Coefficient x standardised value per feature, the intercept as the bias.

        The standardised features are centred on the training mean, so a feature at its
        average contributes 0. Multiclass models give one row of attributions per class.
        """
        scaled = predictor.scaler.apply(X)
        coef, intercept = np.atleast_2d(predictor.coef), np.atleast_1d(predictor.intercept)
        per_class = scaled[:, None, :] * coef[None, :, :]
        bias = np.broadcast_to(intercept, (len(X), coef.shape[0]))[:, :, None]
        out = np.concatenate([per_class, bias], axis=2)
        return out[:, 0, :] if coef.shape[0] == 1 else out

    def importances(self, predictor: Any, feature_names: list[str]) -> dict[str, float]:
        weight = np.abs(predictor.coef).mean(axis=0)
        return {n: float(w) for n, w in zip(feature_names, weight, strict=True)}
