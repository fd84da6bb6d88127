"""Evaluate: test-split metrics from the predictions batch inference produced."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.model import PREDICTION_COLUMN, PROBABILITY_COLUMN

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["compute_metrics", "evaluate_predictions"]

logger = logging.getLogger(__name__)


def compute_metrics(
    frame: pd.DataFrame, *, target: str, task: str, classes: list[Any] | None
) -> dict[str, float]:
    """Metrics for one frame holding the true label, ``prediction`` and probabilities."""
    from sklearn import metrics as m

    y = frame[target]
    pred = frame[PREDICTION_COLUMN]
    if task == "regression":
        yt, yp = y.astype(float).to_numpy(), pred.astype(float).to_numpy()
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(yt, yp))),
            "mae": float(m.mean_absolute_error(yt, yp)),
            "r2": float(m.r2_score(yt, yp)),
        }
    assert classes is not None
    # Compare labels as strings: Parquet may hand back 1 where training saw 1.0.
    yt = y.astype(str).to_numpy()
    yp = pred.astype(str).to_numpy()
    labels = [str(c) for c in classes]
    out = {"accuracy": float(m.accuracy_score(yt, yp))}
    if task == "binary":
        positive = labels[1]
        proba = frame[PROBABILITY_COLUMN].astype(float).to_numpy()
        y_bin = (yt == positive).astype(int)
        out |= {
            "precision": float(m.precision_score(yt, yp, pos_label=positive, zero_division=0)),
            "recall": float(m.recall_score(yt, yp, pos_label=positive, zero_division=0)),
            "f1": float(m.f1_score(yt, yp, pos_label=positive, zero_division=0)),
            "roc_auc": float(m.roc_auc_score(y_bin, proba)) if 0 < y_bin.sum() < len(y_bin)
            else float("nan"),
            "log_loss": float(m.log_loss(y_bin, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
        }
    else:
        proba = frame[[f"{PROBABILITY_COLUMN}_{c}" for c in classes]].to_numpy(dtype=float)
        out |= {
            "precision": float(m.precision_score(yt, yp, labels=labels, average="macro",
                                                 zero_division=0)),
            "recall": float(m.recall_score(yt, yp, labels=labels, average="macro",
                                           zero_division=0)),
            "f1": float(m.f1_score(yt, yp, labels=labels, average="macro", zero_division=0)),
            "roc_auc": float(m.roc_auc_score(yt, proba, labels=labels, multi_class="ovr")),
            "log_loss": float(m.log_loss(yt, np.clip(proba, 1e-15, 1), labels=labels)),
        }
    return out


def evaluate_predictions(
    predictions: Dataset, *, target: str, task: str, classes: list[Any] | None
) -> dict[str, float]:
    """Compute metrics inside a Ray task, which pulls only the label and prediction columns."""
    import ray

    keep = [target, PREDICTION_COLUMN]
    if task != "regression":
        keep += [c for c in predictions.columns() if c.startswith(PROBABILITY_COLUMN)]
    narrow = predictions.select_columns(keep)

    @ray.remote(num_cpus=0.5)
    def _score(ds: Dataset) -> dict[str, float]:
        return compute_metrics(ds.to_pandas(), target=target, task=task, classes=classes)

    return ray.get(_score.remote(narrow.materialize()))
