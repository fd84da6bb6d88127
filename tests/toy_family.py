"""A model family defined outside the package, the way a user extends raypipe.

Between the ``README example`` markers stands, line for line, the example of README.md's
"A new model family" (``tests/unit/test_readme_examples.py`` checks that the two agree, and
``tests/integration/test_extending.py`` runs a whole pipeline on it). Importing this module
registers the ``centroid`` family in the importing process; a batch actor or Serve replica
that loads a centroid model imports it from the class its ``family.json`` names.
"""

# --- README example: a new model family ---
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.families import (
    BaseFamily,
    FitContext,
    FitResult,
    Standardizer,
    TrainData,
    register_family,
    score,
)


class CentroidModel:
    """What ``load`` returns: ``predict_raw`` gives P(class 1), class probabilities or values."""

    def __init__(self, task: str, scaler: Standardizer, centroids: np.ndarray,
                 temperature: float) -> None:
        self.task, self.scaler = task, scaler
        self.centroids, self.temperature = centroids, temperature

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        Z = self.scaler.apply(X)
        if self.task == "regression":  # centroids holds the ridge weights, intercept last
            return Z @ self.centroids[:-1] + self.centroids[-1]
        d2 = ((Z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        logits = -d2 / self.temperature
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        return proba[:, 1] if self.task == "binary" else proba


@register_family
class CentroidFamily(BaseFamily):
    """``train.families: [centroid]``: nearest centroid (classification), ridge (regression)."""

    name = "centroid"

    def fit(self, params: dict[str, Any], train: TrainData, valid: TrainData,
            ctx: FitContext) -> FitResult:
        scaler = Standardizer.fit(train.X)
        Z = scaler.apply(train.X)
        if ctx.task == "regression":
            A = np.c_[Z, np.ones(len(Z))]
            alpha = float(params.get("alpha", 1.0))
            centroids = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ train.y)
        else:
            k = max(ctx.num_classes, 2)
            centroids = np.stack([Z[train.y == c].mean(axis=0) if (train.y == c).any()
                                  else np.zeros(Z.shape[1]) for c in range(k)])
        model = CentroidModel(ctx.task, scaler, centroids,
                              float(params.get("temperature", 1.0)))
        value = score(ctx.metric, ctx.task, valid.y, model.predict_raw(valid.X))
        ctx.report({ctx.metric: value})
        return FitResult(model, value, 1)

    def save(self, model: CentroidModel, directory: Path) -> None:
        model.scaler.save(directory / "scaler.json")
        (directory / "centroid.json").write_text(json.dumps({
            "task": model.task, "centroids": model.centroids.tolist(),
            "temperature": model.temperature}))

    def load(self, directory: Path) -> CentroidModel:
        saved = json.loads((directory / "centroid.json").read_text())
        return CentroidModel(saved["task"], Standardizer.load(directory / "scaler.json"),
                             np.asarray(saved["centroids"]), saved["temperature"])

    def importances(self, predictor: CentroidModel, feature_names: list[str]) -> dict[str, float]:
        c = predictor.centroids
        weight = np.abs(c[:-1]) if predictor.task == "regression" else c.std(axis=0)
        return dict(zip(feature_names, weight.tolist(), strict=True))
# --- end of the README example ---
