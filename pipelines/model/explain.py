"""Per-prediction explanations: feature attributions mapped back to the model's input columns.

The family attributes the margin (log-odds, class scores, the regressed value) to the
featurised columns (:meth:`pipelines.families.Family.contributions`: XGBoost's TreeSHAP, a
linear model's coefficient x value); :func:`pipelines.features.origins.attribution_matrix`
sums those into the raw columns the caller sent. Per row, the column attributions plus the
bias equal the margin. Families that cannot attribute exactly (the MLP) are refused with
:class:`ExplanationsUnsupportedError` instead of being approximated.

No Ray or MLflow import here: it runs in Serve replicas and batch actors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import RaypipeError
from pipelines.features.origins import attribution_matrix
from pipelines.model.spec import ModelSpec, conform_input

__all__ = [
    "BIAS_COLUMN",
    "CONTRIBUTION_PREFIX",
    "Explanation",
    "ExplanationsUnsupportedError",
    "check_explainable",
    "explain_frame",
    "explanation_columns",
    "summary_columns",
]

CONTRIBUTION_PREFIX = "contribution_"
BIAS_COLUMN = "contribution_bias"


class ExplanationsUnsupportedError(RaypipeError, ValueError):
    """The model's family gives no exact attributions."""


@dataclass(frozen=True)
class Explanation:
    """Attributions of ``n`` rows to the input columns, on the model's margin scale."""

    columns: list[str]
    values: np.ndarray
    """``(n, columns)``, or ``(n, classes, columns)`` for a multiclass model."""
    bias: np.ndarray
    """``(n,)``, or ``(n, classes)``."""
    scale: str
    """What the attributions add up to: ``log_odds`` (binary), ``class_score`` (multiclass,
    before the softmax) or ``value`` (regression)."""
    classes: list[Any] | None = None

    @property
    def margin(self) -> np.ndarray:
        return np.asarray(self.values.sum(axis=-1) + self.bias)

    @property
    def predicted_class(self) -> np.ndarray | None:
        """Each row's predicted class index (multiclass; the argmax of the class scores is
        the argmax of the probabilities), else None."""
        return self.margin.argmax(axis=1) if self.values.ndim == 3 else None


_SCALES = {"binary": "log_odds", "multiclass": "class_score", "regression": "value"}


def check_explainable(family: Any) -> None:
    """Raise :class:`ExplanationsUnsupportedError` unless ``family`` attributes predictions."""
    probe = getattr(type(family), "contributions", None)
    base = _base_contributions()
    if probe is None or probe is base:
        raise ExplanationsUnsupportedError(
            f"the {getattr(family, 'name', type(family).__name__)} model family gives no "
            "exact per-prediction attributions; explanations are available for xgboost and "
            "linear models")


def _base_contributions() -> Any:
    from pipelines.families.base import BaseFamily

    return BaseFamily.contributions


def explain_frame(spec: ModelSpec, predictor: Any, family: Any, rows: pd.DataFrame, *,
                  conformed: bool = False) -> Explanation:
    """Explain raw ``rows`` (cast by :func:`conform_input` unless ``conformed``)."""
    check_explainable(family)
    pipe = spec.pipeline
    frame = rows if conformed else conform_input(rows, spec)
    features = pipe.transform(frame).to_numpy(dtype=np.float64)
    contribs = family.contributions(predictor, features)
    if contribs is None:
        raise ExplanationsUnsupportedError(f"the {family.name} model gave no attributions")
    contribs = np.asarray(contribs, dtype=np.float64)
    k = len(pipe.feature_names)
    if contribs.shape[-1] != k + 1 or contribs.shape[0] != len(frame):
        raise ValueError(f"attributions of shape {contribs.shape} for {len(frame)} rows of "
                         f"{k} features")
    to_inputs = attribution_matrix(pipe)
    values = contribs[..., :k] @ to_inputs
    return Explanation(columns=list(pipe.input_schema), values=values, bias=contribs[..., k],
                       scale=_SCALES[pipe.task],
                       classes=list(pipe.classes or []) if pipe.task == "multiclass" else None)


def explanation_columns(explanation: Explanation, predicted: np.ndarray | None = None
                        ) -> dict[str, np.ndarray]:
    """Flat columns for a table: ``contribution_<column>`` and ``contribution_bias``.

    A multiclass model's attributions are those of each row's predicted class (``predicted``:
    class indices), the class a reader of the table asks about.
    """
    values, bias = explanation.values, explanation.bias
    if values.ndim == 3:
        if predicted is None:
            raise ValueError("a multiclass explanation needs the predicted class of each row")
        rows = np.arange(len(values))
        values, bias = values[rows, predicted], bias[rows, predicted]
    out = {f"{CONTRIBUTION_PREFIX}{c}": values[:, j] for j, c in enumerate(explanation.columns)}
    out[BIAS_COLUMN] = bias
    return out


def summary_columns(explanation: Explanation, frame: pd.DataFrame, schema: dict[str, str]
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(attributions, values)`` by input column, for a summary plot of many rows.

    Multiclass rows contribute their predicted class's attributions. Values are numbers where
    the column's kind (``schema``) has an order (floats, booleans, datetimes), NaN for text and
    where missing.
    """
    flat = explanation_columns(explanation, explanation.predicted_class)
    attributions = {c: flat[f"{CONTRIBUTION_PREFIX}{c}"] for c in explanation.columns}
    values: dict[str, np.ndarray] = {}
    for c in explanation.columns:
        kind = schema.get(c)
        if c not in frame.columns or kind not in ("float", "bool", "datetime"):
            values[c] = np.full(len(frame), np.nan)
            continue
        s = frame[c]
        if kind == "datetime":
            s = pd.to_datetime(s, errors="coerce", utc=True)
            numbers = (s - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        else:
            numbers = pd.to_numeric(s.astype(object).where(s.notna(), None), errors="coerce")
        values[c] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return attributions, values
