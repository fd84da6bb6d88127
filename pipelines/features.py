"""The fitted feature pipeline: cleaning and feature engineering, frozen into one object.

Fitting runs on Ray Data (one aggregation pass over the training split); the fitted state is a
frozen pydantic model, stored as JSON next to the model. :meth:`FeaturePipeline.transform`
is plain pandas, so batch inference, the Serve app and the MLflow pyfunc model all apply the
very same code and statistics to raw rows.

This module is imported by the MLflow model at load time: it must not import Ray at module
level.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.config import CleanConfig, FeaturesConfig, RatioFeature

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = [
    "CategoricalStats",
    "ColumnKind",
    "FeaturePipeline",
    "MissingColumnsError",
    "NumericStats",
    "fit_feature_pipeline",
    "infer_task",
]

logger = logging.getLogger(__name__)

ColumnKind = Literal["float", "bool", "string", "datetime"]
Task = Literal["binary", "multiclass", "regression"]
Label = int | float | str | bool


class MissingColumnsError(ValueError):
    """Input rows lack columns the fitted pipeline needs."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumericStats(_Frozen):
    fill: float
    lower: float | None = None
    upper: float | None = None


class CategoricalStats(_Frozen):
    fill: str
    vocab: list[str]


class FeaturePipeline(_Frozen):
    """Every statistic fitted on the training split, and the code that applies them."""

    format_version: int = 1
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
    encoding: Literal["ordinal", "onehot"]
    normalize_categories: bool
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
        return self._all_features(df)[self.feature_names]

    def _all_features(self, df: pd.DataFrame) -> pd.DataFrame:
        cols: dict[str, pd.Series] = {}
        for c, st in self.numeric.items():
            v = _to_float(df[c]).fillna(st.fill)
            if st.lower is not None and st.upper is not None:
                v = v.clip(st.lower, st.upper)
            cols[c] = v
        for c in self.boolean:
            cols[c] = _to_float(df[c])
        for c, cst in self.categorical.items():
            v = self._clean_category(df[c]).fillna(cst.fill)
            codes = pd.Series(
                pd.Categorical(v, categories=cst.vocab).codes, index=df.index, dtype="float64"
            )
            if self.encoding == "ordinal":
                # Unseen categories share the code after the vocabulary.
                cols[c] = codes.where(codes >= 0, float(len(cst.vocab)))
            else:
                for i, cat in enumerate(cst.vocab):
                    cols[f"{c}={cat}"] = (codes == i).astype("float64")
                cols[f"{c}=__other__"] = (codes < 0).astype("float64")
        for c in self.datetime:
            t = pd.to_datetime(df[c], errors="coerce", format="mixed")
            for part in self.datetime_parts:
                cols[f"{c}_{part}"] = getattr(t.dt, part).astype("float64")
        for r in self.ratios:
            num = cols[r.numerator] if r.numerator in cols else _to_float(df[r.numerator])
            den = cols[r.denominator] if r.denominator in cols else _to_float(df[r.denominator])
            cols[r.name] = num / den.where(den != 0)
        out = pd.DataFrame(cols, index=df.index).astype("float64")
        return out.rename(columns=_feature_name)

    def _clean_category(self, s: pd.Series) -> pd.Series:
        v = s.astype("string")
        return v.str.strip().str.lower() if self.normalize_categories else v

    def encode_target(self, s: pd.Series) -> np.ndarray:
        """Labels to model targets: class indices for classification, floats for regression."""
        if self.task == "regression" or self.classes is None:
            return _to_float(s).to_numpy()
        index = {_label_key(c): i for i, c in enumerate(self.classes)}
        codes = s.map(lambda v: index.get(_label_key(v), -1)).to_numpy()
        if (codes < 0).any():
            unknown = sorted({str(v) for v in s[codes < 0]})[:5]
            raise ValueError(f"target {self.target!r} has labels unseen in training: {unknown}")
        return codes.astype("float64")

    def decode_target(self, codes: np.ndarray) -> list[Label]:
        assert self.classes is not None
        return [self.classes[int(i)] for i in codes]


# ---------------------------------------------------------------- helpers


_XGB_FORBIDDEN = str.maketrans({"[": "(", "]": ")", "<": "lt"})


def _feature_name(name: str) -> str:
    """XGBoost rejects feature names with '[', ']' or '<' (e.g. a category '<18')."""
    return name.translate(_XGB_FORBIDDEN)


def _to_float(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    return pd.to_numeric(s, errors="coerce").astype("float64")


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


# ---------------------------------------------------------------- fitting


def fit_feature_pipeline(
    train: Dataset,
    *,
    target: str,
    task: Task,
    clean: CleanConfig,
    features: FeaturesConfig,
) -> FeaturePipeline:
    """Fit every cleaning and feature statistic on ``train`` in one Ray Data aggregation pass."""
    from ray.data.aggregate import ApproximateQuantile, Mean, ValueCounter

    schema = train.schema()
    if schema is None:
        raise ValueError("the training split is empty")
    input_schema: dict[str, ColumnKind] = {}
    for name, typ in zip(schema.names, schema.types, strict=True):
        if name == target:
            continue
        kind = _column_kind(typ)
        if kind is None:
            logger.warning("column %r has unsupported type %s; it is not used", name, typ)
            continue
        input_schema[name] = kind
    used = {c: k for c, k in input_schema.items() if c not in features.drop}
    numeric = [c for c, k in used.items() if k == "float"]
    categorical = [c for c, k in used.items() if k == "string"]

    aggs: list[Any] = []
    for c in numeric:
        aggs.append(ApproximateQuantile(on=c, quantiles=[0.25, 0.5, 0.75], alias_name=f"q:{c}"))
        aggs.append(Mean(on=c, ignore_nulls=True, alias_name=f"mean:{c}"))
    for c in categorical:
        aggs.append(ValueCounter(on=c, alias_name=f"vc:{c}"))
    if task != "regression":
        aggs.append(ValueCounter(on=target, alias_name="vc:__target__"))
    source = train
    if categorical and clean.normalize_categories:
        keep = [*numeric, *categorical] + ([target] if task != "regression" else [])
        source = train.map_batches(
            partial(_normalize_with_passthrough, normalize=categorical, keep=keep),
            batch_format="pandas",
        )
    stats = source.aggregate(*aggs) if aggs else {}

    numeric_stats: dict[str, NumericStats] = {}
    for c in numeric:
        q1, med, q3 = (stats[f"q:{c}"] or [None, None, None])
        mean = stats[f"mean:{c}"]
        if med is None:
            logger.warning("numeric column %r is empty in the training split", c)
        fill = {
            "median": med, "mean": mean, "constant": clean.fill_value_numeric,
        }[clean.impute_numeric]
        lower = upper = None
        if clean.outliers == "iqr" and q1 is not None and q3 is not None:
            iqr = q3 - q1
            lower, upper = q1 - clean.iqr_factor * iqr, q3 + clean.iqr_factor * iqr
        numeric_stats[c] = NumericStats(
            fill=float(fill if fill is not None else clean.fill_value_numeric),
            lower=lower, upper=upper,
        )

    cat_stats: dict[str, CategoricalStats] = {}
    for c in categorical:
        top = _top_values(stats[f"vc:{c}"], features.max_categories)
        vocab = [v for v, _ in top]
        if clean.impute_categorical == "most_frequent" and vocab:
            fill = vocab[0]
        else:
            fill = clean.fill_value_categorical
            if fill not in vocab:
                vocab.append(fill)
        cat_stats[c] = CategoricalStats(fill=fill, vocab=vocab)

    classes: list[Label] | None = None
    if task != "regression":
        counter = stats["vc:__target__"]
        classes = sorted((v for v in counter["values"] if v is not None), key=_label_key)
        classes = [v.item() if isinstance(v, np.generic) else v for v in classes]

    for r in features.ratios:
        for part in (r.numerator, r.denominator):
            if used.get(part) != "float":
                raise ValueError(f"features.ratios.{r.name}: {part!r} is not a numeric column")

    pipeline = FeaturePipeline(
        target=target,
        task=task,
        classes=classes,
        input_schema=input_schema,
        optional_columns=[c for c in input_schema if c not in used],
        numeric=numeric_stats,
        boolean=[c for c, k in used.items() if k == "bool"],
        categorical=cat_stats,
        datetime=[c for c, k in used.items() if k == "datetime"],
        datetime_parts=list(features.datetime_parts),
        ratios=list(features.ratios),
        encoding=features.categorical_encoding,
        normalize_categories=clean.normalize_categories,
        feature_names=[],
    )
    empty = _empty_frame(input_schema)
    names = list(pipeline._all_features(empty).columns)
    base = set(pipeline.model_copy(update={"ratios": []})._all_features(empty).columns)
    clashes = sorted({r.name for r in features.ratios} & (base | set(input_schema)))
    if clashes or len(set(names)) != len(names):
        raise ValueError(
            f"features.ratios: name(s) already used by a column or feature: {', '.join(clashes)}"
        )
    return pipeline.model_copy(update={"feature_names": names})


def _normalize_with_passthrough(
    df: pd.DataFrame, normalize: list[str], keep: list[str]
) -> pd.DataFrame:
    out = df[keep].copy()
    for c in normalize:
        out[c] = out[c].astype("string").str.strip().str.lower()
    return out


def _empty_frame(schema: dict[str, ColumnKind]) -> pd.DataFrame:
    dtypes = {"float": "float64", "bool": "boolean", "string": "string",
              "datetime": "datetime64[ns]"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[k]) for c, k in schema.items()})
