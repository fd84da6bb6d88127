"""A compiled, pandas-free copy of the fitted feature pipeline for small online requests.

``FeaturePipeline.transform`` is pandas code with a fixed cost of a few milliseconds per call,
whatever the number of rows: on a one-row request that cost is the whole request. This module
turns the fitted pipeline into plain per-column NumPy/Python steps that compute the very same
feature matrix (same values, same order) in tens of microseconds.

It only takes values it reproduces exactly: finite-or-missing floats, bools, printable ASCII
strings and naive datetimes. Anything else (a time zone, a non-ASCII category, a number in a
string column) makes :meth:`CompiledPipeline.accepts` say no and the caller uses the pandas
path. The serving replica also checks both paths agree on sample rows when it loads a model,
and the unit tests compare them on generated rows.

Imported by Serve replicas: no Ray import at module level.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from pipelines.features import FeaturePipeline

__all__ = ["Columns", "CompiledPipeline"]

Columns = dict[str, list[Any]]
"""Raw rows by column: validated Python values (float, bool, str, datetime or None)."""

_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_XGB_FORBIDDEN = str.maketrans({"[": "(", "]": ")", "<": "lt"})
_DATETIME_PART = {
    "year": lambda t: t.year,
    "month": lambda t: t.month,
    "day": lambda t: t.day,
    "dayofweek": lambda t: t.weekday(),
    "hour": lambda t: t.hour,
}


def _feature_name(name: str) -> str:
    # Same renaming as the feature pipeline: XGBoost rejects '[', ']' and '<' in names.
    return name.translate(_XGB_FORBIDDEN)


class CompiledPipeline:
    """The fitted statistics of one :class:`FeaturePipeline`, applied column by column."""

    def __init__(self, pipeline: FeaturePipeline) -> None:
        self.pipeline = pipeline
        self.kinds = dict(pipeline.input_schema)
        self.vocab_index = {
            c: {v: i for i, v in enumerate(st.vocab)} for c, st in pipeline.categorical.items()
        }
        self.order = list(pipeline.feature_names)

    # ---------------------------------------------------------------- eligibility

    def accepts(self, columns: Columns) -> bool:
        """True when every value is of a kind this path reproduces exactly."""
        for col, kind in self.kinds.items():
            values = columns.get(col)
            if values is None:
                if col in self.pipeline.optional_columns:
                    continue
                return False
            if kind == "string":
                if not all(v is None or (type(v) is str and _PRINTABLE_ASCII.match(v))
                           for v in values):
                    return False
            elif kind == "datetime":
                if not all(v is None or (type(v) is datetime and v.tzinfo is None)
                           for v in values):
                    return False
            elif kind == "bool":
                if not all(v is None or type(v) is bool for v in values):
                    return False
            elif not all(v is None or (type(v) in (float, int) and math.isfinite(v))
                         for v in values):
                return False
        return True

    # ---------------------------------------------------------------- transform

    def transform(self, columns: Columns, n: int) -> np.ndarray:
        """The ``(n, features)`` float64 matrix ``pipeline.transform`` would give."""
        pipe = self.pipeline
        cols: dict[str, np.ndarray] = {}
        for c, st in pipe.numeric.items():
            v = _floats(columns[c], n)
            v = np.where(np.isnan(v), st.fill, v)
            if st.lower is not None and st.upper is not None:
                v = np.clip(v, st.lower, st.upper)
            cols[c] = v
        for c in pipe.boolean:
            cols[c] = _floats(columns[c], n)
        for c, cst in pipe.categorical.items():
            index = self.vocab_index[c]
            clean = pipe.normalize_categories
            codes = np.fromiter(
                (index.get(cst.fill if v is None else (v.strip().lower() if clean else v), -1)
                 for v in columns[c]),
                dtype=np.float64, count=n,
            )
            if pipe.encoding == "ordinal":
                cols[c] = np.where(codes >= 0, codes, float(len(cst.vocab)))
            else:
                for i, cat in enumerate(cst.vocab):
                    cols[f"{c}={cat}"] = (codes == i).astype(np.float64)
                cols[f"{c}=__other__"] = (codes < 0).astype(np.float64)
        for c in pipe.datetime:
            values = columns[c]
            for part in pipe.datetime_parts:
                get = _DATETIME_PART[part]
                cols[f"{c}_{part}"] = np.fromiter(
                    (np.nan if t is None else float(get(t)) for t in values),
                    dtype=np.float64, count=n,
                )
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for r in pipe.ratios:
                num = cols[r.numerator] if r.numerator in cols else _floats(columns[r.numerator], n)
                den = cols[r.denominator] if r.denominator in cols else _floats(
                    columns[r.denominator], n)
                cols[r.name] = num / np.where(den != 0, den, np.nan)
        named = {_feature_name(k): v for k, v in cols.items()}
        out = np.empty((n, len(self.order)), dtype=np.float64)
        for j, name in enumerate(self.order):
            out[:, j] = named[name]
        return out


def _floats(values: Sequence[Any], n: int) -> np.ndarray:
    # None becomes NaN, as pandas' to_numeric does for a missing value.
    return np.fromiter((np.nan if v is None else float(v) for v in values),
                       dtype=np.float64, count=n)
