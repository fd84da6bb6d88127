"""The model's input contract, checked on raw rows before they reach the model.

A fitted pipeline knows the kind of every raw column (float, bool, string, datetime). Online
requests are validated row by row with a pydantic model (:func:`row_model`); frames (the MLflow
protocol's data frames, batch inference's Arrow batches) are checked column by column
(:func:`row_reasons`). A value that cannot be read as its column's kind makes the row
unscorable: a 4xx online, a quarantined row in batch — never a silent NaN.

No Ray import: this runs in Serve replicas and batch actors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from pipelines.features.pipeline import ColumnKind, FeaturePipeline

__all__ = ["frame_problems", "predict_body_model", "row_model", "row_reasons"]

_PY_TYPES: dict[ColumnKind, Any] = {
    "float": float, "bool": bool, "string": str, "datetime": datetime,
}


def row_model(pipeline: FeaturePipeline) -> type[BaseModel]:
    """A pydantic model of one raw input row: every column present (null allowed), no others.

    Columns the model never uses (``optional_columns``) may be left out. Numbers must be
    finite: a missing value is ``null``, not NaN.
    """
    fields: dict[str, Any] = {}
    for name, kind in pipeline.input_schema.items():
        typ = _PY_TYPES[kind] | None
        fields[name] = (typ, None) if name in pipeline.optional_columns else (typ, ...)
    return create_model(
        "InputRow", __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields
    )


def predict_body_model(pipeline: FeaturePipeline, max_rows: int) -> type[BaseModel]:
    """The /predict body: ``{"instances": [row, ...]}`` with 1 to ``max_rows`` rows."""
    row = row_model(pipeline)
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid"),
        instances=(list[row], Field(min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
    )


def _scalar(v: Any) -> bool:
    return isinstance(v, str | bytes | int | float | bool | np.generic | pd.Timestamp | datetime)


def _bad_mask(s: pd.Series, kind: ColumnKind) -> tuple[np.ndarray, str]:
    """Rows whose present value is not readable as ``kind``, and what is wrong with them."""
    present = s.notna().to_numpy()
    if kind == "float":
        if pd.api.types.is_bool_dtype(s):
            return np.zeros(len(s), dtype=bool), ""
        try:
            num = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
        except (TypeError, ValueError):
            num = np.array([_to_float_or_nan(v) for v in s], dtype=np.float64)
        return present & ~np.isfinite(num), "not a finite number"
    if kind == "bool":
        if pd.api.types.is_bool_dtype(s):
            return np.zeros(len(s), dtype=bool), ""
        ok = np.array([isinstance(v, bool | np.bool_) or (
            isinstance(v, int | float | np.integer | np.floating) and v in (0, 1)) for v in s],
            dtype=bool)
        return present & ~ok, "not a boolean"
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(s):
            return np.zeros(len(s), dtype=bool), ""
        try:
            parsed = pd.to_datetime(s, errors="coerce", format="mixed").isna().to_numpy()
        except (TypeError, ValueError, OverflowError):
            parsed = np.array([_not_datetime(v) for v in s], dtype=bool)
        return present & parsed, "not a datetime"
    if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
        return np.zeros(len(s), dtype=bool), ""
    ok = np.array([_scalar(v) for v in s], dtype=bool)
    return present & ~ok, "not a string"


def _to_float_or_nan(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _not_datetime(v: Any) -> bool:
    try:
        return bool(pd.isna(pd.to_datetime(v, errors="coerce", format="mixed")))
    except (TypeError, ValueError, OverflowError):
        return True


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def row_reasons(frame: pd.DataFrame, pipeline: FeaturePipeline) -> pd.Series:
    """Per row: None when the model can score it, else the first reason it cannot.

    Columns absent from ``frame`` are not checked here (a missing column is an error of the
    whole input: see ``FeaturePipeline.check_columns``).
    """
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    for col, kind in pipeline.input_schema.items():
        if col not in frame.columns:
            continue
        bad, what = _bad_mask(frame[col], kind)
        new = bad & reasons.isna().to_numpy()
        if new.any():
            values = frame[col].to_numpy()[new]
            reasons[new] = [f"{col}: {what}: {_shown(v)}" for v in values]
    return reasons


def frame_problems(frame: pd.DataFrame, pipeline: FeaturePipeline) -> list[dict[str, Any]]:
    """Every unknown or missing column and every unreadable value, naming the field."""
    schema = pipeline.input_schema
    problems: list[dict[str, Any]] = []
    problems += [{"field": str(c), "message": "unknown column"}
                 for c in frame.columns if c not in schema]
    problems += [{"field": c, "message": "missing column"} for c in schema
                 if c not in frame.columns and c not in pipeline.optional_columns]
    if frame.columns.duplicated().any():
        problems += [{"field": str(c), "message": "column given twice"}
                     for c in frame.columns[frame.columns.duplicated()]]
    if problems:
        return problems
    for col, kind in schema.items():
        if col not in frame.columns:
            continue
        bad, what = _bad_mask(frame[col], kind)
        for i in np.flatnonzero(bad)[:50]:
            problems.append({"field": f"{i}.{col}",
                             "message": f"{what}: {_shown(frame[col].iloc[i])}"})
    return problems
