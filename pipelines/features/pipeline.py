"""The fitted feature pipeline: cleaning and feature engineering, frozen into one object.

Fitting runs on Ray Data (see :mod:`pipelines.features.fit`: one aggregation pass over the
training split, plus one more when scaling or selection needs feature statistics); the fitted
state is a frozen pydantic model, stored as JSON inside the MLflow model. One transform kernel
(NumPy and pyarrow.compute over raw columns, :mod:`pipelines.features.columns`) applies it to
Arrow batches (:meth:`FeaturePipeline.transform_table`, used on Ray Data) and pandas frames
(:meth:`FeaturePipeline.transform`, used by the MLflow pyfunc model and the Serve app), so
batch and online inference apply the very same code and statistics to raw rows.

Order of the steps, per row: type coercion (``input_schema``), numeric imputation and outlier
clipping, missing-value indicators, category normalisation and synonyms, encoding, datetime
parts, ratios, derived expressions, bins, then scaling and the frozen feature selection.

This module is imported by the MLflow model at load time: it must not import Ray at module
level.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from pipelines.config import DerivedFeature, RatioFeature
from pipelines.errors import RaypipeError
from pipelines.expressions import evaluate
from pipelines.features.columns import ArrowColumns, ColumnSource, PandasColumns, to_float

__all__ = [
    "BinStats",
    "CategoricalStats",
    "ColumnKind",
    "FeaturePipeline",
    "MissingColumnsError",
    "NumericStats",
    "ScaleStats",
    "clean_strings",
    "encode_codes",
    "feature_name",
    "hash_buckets",
    "infer_task",
]

logger = logging.getLogger(__name__)

ColumnKind = Literal["float", "bool", "string", "datetime"]
Task = Literal["binary", "multiclass", "regression"]
Label = int | float | str | bool
Encoding = Literal["ordinal", "onehot", "hashed"]

MISSING_SUFFIX = "_missing"
BIN_SUFFIX = "_bin"


class MissingColumnsError(RaypipeError, ValueError):
    """Input rows lack columns the fitted pipeline needs."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumericStats(_Frozen):
    fill: float
    lower: float | None = None
    upper: float | None = None
    indicator: bool = False


class CategoricalStats(_Frozen):
    fill: str
    vocab: list[str]
    encoding: Encoding | None = None
    """None: the pipeline's default encoding."""
    synonyms: dict[str, str] = {}
    indicator: bool = False


class BinStats(_Frozen):
    column: str
    edges: list[float]
    """Inner edges, ascending: value v falls in bin ``searchsorted(edges, v, 'right')``."""


class ScaleStats(_Frozen):
    shift: float
    divisor: float


class FeaturePipeline(_Frozen):
    """Every statistic fitted on the training split, and the code that applies them."""

    format_version: int = 2
    target: str
    task: Task
    classes: list[Label] | None = None
    input_schema: dict[str, ColumnKind]
    optional_columns: list[str] = []
    numeric: dict[str, NumericStats]
    boolean: list[str]
    categorical: dict[str, CategoricalStats]
    datetime: list[str]
    datetime_parts: list[str]
    ratios: list[RatioFeature]
    derived: list[DerivedFeature] = []
    bins: list[BinStats] = []
    encoding: Encoding
    hash_buckets: int = 16
    normalize_categories: bool
    scaling: Literal["none", "standard", "minmax"] = "none"
    scale: dict[str, ScaleStats] = {}
    dropped_features: dict[str, str] = {}
    """Features computed but left out by feature selection, with the reason."""
    feature_names: list[str]

    # ---------------------------------------------------------------- inference

    def check_columns(self, columns: Any) -> None:
        """Raise :class:`MissingColumnsError` naming every needed column that is absent."""
        have = set(columns)
        missing = [c for c in self.input_schema if c not in have and c not in self.optional_columns]
        if missing:
            raise MissingColumnsError(f"input is missing column(s): {', '.join(missing)}")

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Turn raw rows into the model's numeric feature frame (same index, same row count)."""
        self.check_columns(df.columns)
        cols = self._compute(PandasColumns(df), self.feature_names)
        return pd.DataFrame({n: cols[n] for n in self.feature_names}, index=df.index,
                            columns=self.feature_names, dtype="float64")

    def transform_table(self, table: pa.Table) -> pa.Table:
        """:meth:`transform` for an Arrow batch: float64 feature columns, no pandas round trip."""
        self.check_columns(table.column_names)
        cols = self._compute(ArrowColumns(table), self.feature_names)
        # Missing features become nulls, as pandas frames converted by Ray Data do: Ray Data's
        # aggregations (Mean, Std with ignore_nulls) skip nulls but not NaN values.
        return pa.table({n: pa.array(cols[n], type=pa.float64(), from_pandas=True)
                         for n in self.feature_names})

    def _all_features(self, df: pd.DataFrame) -> pd.DataFrame:
        """Every feature, before selection (fitting and tests use it)."""
        cols = self._compute(PandasColumns(df), None)
        return pd.DataFrame(cols, index=df.index, dtype="float64")

    def _compute(self, src: ColumnSource, wanted: list[str] | None) -> dict[str, np.ndarray]:
        """Features by (XGBoost-safe) name; all of them, or at least those in ``wanted``."""
        n = src.n
        cols: dict[str, np.ndarray] = {}
        for c, st in self.numeric.items():
            v = src.floats(c)
            missing = np.isnan(v)
            v[missing] = st.fill
            if st.lower is not None and st.upper is not None:
                np.clip(v, st.lower, st.upper, out=v)
            cols[c] = v
            if st.indicator:
                cols[c + MISSING_SUFFIX] = missing.astype(np.float64)
        for c in self.boolean:
            cols[c] = src.floats(c)
        for c, cst in self.categorical.items():
            self._encode(cols, c, cst, src.strings(c), n)
        for c in self.datetime:
            t = src.datetimes(c)
            for part in self.datetime_parts:
                cols[f"{c}_{part}"] = _datetime_part(t, part)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for r in self.ratios:
                num = cols[r.numerator] if r.numerator in cols else src.floats(r.numerator)
                den = cols[r.denominator] if r.denominator in cols else src.floats(r.denominator)
                cols[r.name] = num / np.where(den != 0, den, np.nan)
        for d in self.derived:
            cols[d.name] = evaluate(d.name, d.expr, cols, n)
        for b in self.bins:
            v = cols[b.column] if b.column in cols else src.floats(b.column)
            idx = np.searchsorted(np.asarray(b.edges, dtype=np.float64), v, side="right")
            cols[b.column + BIN_SUFFIX] = np.where(np.isnan(v), np.nan, idx.astype(np.float64))
        named = {feature_name(k): v for k, v in cols.items()}
        for name, sc in self.scale.items():
            if wanted is None or name in wanted:
                named[name] = (named[name] - sc.shift) / sc.divisor
        return named

    def _encode(self, cols: dict[str, np.ndarray], c: str, cst: CategoricalStats,
                raw: pa.Array | pa.ChunkedArray, n: int) -> None:
        v = clean_strings(raw, self.normalize_categories, cst.synonyms)
        if cst.indicator:
            missing = pc.is_null(v).to_numpy(zero_copy_only=False)
        v = pc.fill_null(v, cst.fill)
        encoding = cst.encoding or self.encoding
        if encoding == "hashed":
            buckets = hash_buckets(v, self.hash_buckets)
            for i in range(self.hash_buckets):
                cols[f"{c}__hash{i}"] = (buckets == i).astype(np.float64)
        else:
            codes = pc.fill_null(pc.index_in(v, value_set=pa.array(cst.vocab, type=v.type)), -1)
            codes_np = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float64)
            encode_codes(cols, c, codes_np, cst.vocab, encoding)
        if cst.indicator:
            cols[c + MISSING_SUFFIX] = np.asarray(missing, dtype=np.float64)

    def encode_target(self, s: pd.Series) -> np.ndarray:
        """Labels to model targets: class indices for classification, floats for regression."""
        if self.task == "regression" or self.classes is None:
            return to_float(s).to_numpy()
        index = {_label_key(c): i for i, c in enumerate(self.classes)}
        codes = s.map(lambda v: index.get(_label_key(v), -1)).to_numpy()
        if (codes < 0).any():
            unknown = sorted({str(v) for v in s[codes < 0]})[:5]
            raise ValueError(f"target {self.target!r} has labels unseen in training: {unknown}")
        return codes.astype("float64")

    def decode_target(self, codes: np.ndarray) -> list[Label]:
        assert self.classes is not None
        # Indexing an object array keeps the labels' own Python objects; 20x faster than a
        # per-row comprehension (7 ms of a 90 ms batch-inference call on 65,536 rows).
        labels = np.empty(len(self.classes), dtype=object)
        labels[:] = self.classes
        return list(labels[np.asarray(codes, dtype=np.intp)].tolist())


def encode_codes(cols: dict[str, np.ndarray], c: str, codes: np.ndarray, vocab: list[str],
                 encoding: str) -> None:
    """Vocabulary codes (-1: unseen) as one ordinal column or one-hot columns."""
    if encoding == "ordinal":
        # Unseen categories share the code after the vocabulary.
        cols[c] = np.where(codes >= 0, codes, float(len(vocab)))
    else:
        for i, cat in enumerate(vocab):
            cols[f"{c}={cat}"] = (codes == i).astype(np.float64)
        cols[f"{c}=__other__"] = (codes < 0).astype(np.float64)


def clean_strings(raw: pa.Array | pa.ChunkedArray, normalize: bool,
                  synonyms: dict[str, str]) -> pa.Array | pa.ChunkedArray:
    """Category normalisation: trim and lower-case (optional), then map synonyms."""
    v = pc.utf8_lower(pc.utf8_trim_whitespace(raw)) if normalize else raw
    if synonyms:
        keys = pa.array(list(synonyms), type=v.type)
        idx = pc.index_in(v, value_set=keys)
        mapped = pc.take(pa.array(list(synonyms.values()), type=v.type), idx)
        v = pc.if_else(pc.is_null(idx), v, mapped)
    return v


def hash_buckets(values: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Bucket of each (non-null) text value: a stable 64-bit hash (pandas' SipHash with its
    fixed key, the same in every process) modulo ``buckets``; each distinct value once."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    encoded = pc.dictionary_encode(arr)
    distinct = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    per_value = pd.util.hash_array(distinct, categorize=False) % np.uint64(buckets)
    return per_value[encoded.indices.to_numpy(zero_copy_only=False)].astype(np.int64)


def _datetime_part(t: pa.Array | pa.ChunkedArray, part: str) -> np.ndarray:
    weekend = part == "is_weekend"
    values = pc.greater_equal(pc.day_of_week(t), 5) if weekend else _DATETIME_PARTS[part](t)
    return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


_DATETIME_PARTS: dict[str, Any] = {
    "year": pc.year, "quarter": pc.quarter, "month": pc.month, "day": pc.day,
    "dayofweek": pc.day_of_week, "dayofyear": pc.day_of_year, "hour": pc.hour,
    "minute": pc.minute,
}


# ---------------------------------------------------------------- helpers


_XGB_FORBIDDEN = str.maketrans({"[": "(", "]": ")", "<": "lt"})


def feature_name(name: str) -> str:
    """XGBoost rejects feature names with '[', ']' or '<' (e.g. a category '<18')."""
    return name.translate(_XGB_FORBIDDEN)


def _label_key(v: Any) -> str:
    """Compare labels across int/float/str spellings of the same value (1, 1.0, '1')."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _column_kind(arrow_type: Any) -> ColumnKind | None:
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_dictionary(arrow_type)):
        return "string"
    return None


def infer_task(labels: list[Any], numeric: bool) -> Task:
    """Binary for two labels, regression for many non-integer numbers, else multiclass."""
    distinct = list({
        _label_key(v): v for v in labels
        if v is not None and not (isinstance(v, float) and np.isnan(v))
    }.values())
    if len(distinct) < 2:
        raise ValueError(f"the target has {len(distinct)} distinct value(s); need at least 2")
    if len(distinct) == 2:
        return "binary"
    if numeric and (len(distinct) > 20 or any(not float(v).is_integer() for v in distinct)):
        return "regression"
    return "multiclass"


def _top_values(counter: dict[str, list[Any]], limit: int) -> list[tuple[str, int]]:
    pairs = [(str(v), int(n)) for v, n in zip(counter["values"], counter["counts"], strict=True)
             if v is not None]
    pairs.sort(key=lambda p: (-p[1], p[0]))  # by count, ties by name: deterministic
    return pairs[:limit]


# ---------------------------------------------------------------- fitting (pipelines.features.fit)


def _empty_frame(schema: dict[str, ColumnKind]) -> pd.DataFrame:
    dtypes = {"float": "float64", "bool": "boolean", "string": "string",
              "datetime": "datetime64[ns]"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[k]) for c, k in schema.items()})
