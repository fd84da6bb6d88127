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
import pandas as pd

from pipelines.expressions import evaluate
from pipelines.features.pipeline import (
    BIN_SUFFIX,
    MISSING_SUFFIX,
    CategoricalStats,
    FeaturePipeline,
    encode_codes,
)

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
    "quarter": lambda t: (t.month - 1) // 3 + 1,
    "dayofyear": lambda t: t.timetuple().tm_yday,
    "minute": lambda t: t.minute,
    "is_weekend": lambda t: t.weekday() >= 5,
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
        self.hashes: dict[str, int] = {}

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
            missing = np.isnan(v)
            v = np.where(missing, st.fill, v)
            if st.lower is not None and st.upper is not None:
                v = np.clip(v, st.lower, st.upper)
            cols[c] = v
            if st.indicator:
                cols[c + MISSING_SUFFIX] = missing.astype(np.float64)
        for c in pipe.boolean:
            cols[c] = _floats(columns[c], n)
        for c, cst in pipe.categorical.items():
            self._encode(cols, c, cst, columns[c], n)
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
        for d in pipe.derived:
            cols[d.name] = evaluate(d.name, d.expr, cols, n)
        for b in pipe.bins:
            v = cols[b.column] if b.column in cols else _floats(columns[b.column], n)
            idx = np.searchsorted(np.asarray(b.edges, dtype=np.float64), v, side="right")
            cols[b.column + BIN_SUFFIX] = np.where(np.isnan(v), np.nan, idx.astype(np.float64))
        named = {_feature_name(k): v for k, v in cols.items()}
        for name, sc in pipe.scale.items():
            if name in self.order:
                named[name] = (named[name] - sc.shift) / sc.divisor
        out = np.empty((n, len(self.order)), dtype=np.float64)
        for j, name in enumerate(self.order):
            out[:, j] = named[name]
        return out


    def _encode(self, cols: dict[str, np.ndarray], c: str, cst: CategoricalStats,
                values: list[Any], n: int) -> None:
        pipe = self.pipeline
        norm = pipe.normalize_categories

        def clean(v: str | None) -> str | None:
            if v is None:
                return None
            k = v.strip().lower() if norm else v
            return cst.synonyms.get(k, k)

        cleaned = [clean(v) for v in values]
        filled = [cst.fill if v is None else v for v in cleaned]
        encoding = cst.encoding or pipe.encoding
        if encoding == "hashed":
            buckets = np.fromiter((self._bucket(v) for v in filled), dtype=np.int64, count=n)
            for i in range(pipe.hash_buckets):
                cols[f"{c}__hash{i}"] = (buckets == i).astype(np.float64)
        else:
            index = self.vocab_index[c]
            codes = np.fromiter((index.get(v, -1) for v in filled), dtype=np.float64, count=n)
            encode_codes(cols, c, codes, cst.vocab, encoding)
        if cst.indicator:
            cols[c + MISSING_SUFFIX] = np.fromiter((v is None for v in cleaned),
                                                   dtype=np.float64, count=n)

    def _bucket(self, v: str) -> int:
        # The same stable hash as pipelines.features.hash_buckets, cached per value.
        b = self.hashes.get(v)
        if b is None:
            h = pd.util.hash_array(np.array([v], dtype=object), categorize=False)[0]
            b = self.hashes[v] = int(h % np.uint64(self.pipeline.hash_buckets))
        return b


def _floats(values: Sequence[Any], n: int) -> np.ndarray:
    # None becomes NaN, as pandas' to_numeric does for a missing value.
    return np.fromiter((np.nan if v is None else float(v) for v in values),
                       dtype=np.float64, count=n)
