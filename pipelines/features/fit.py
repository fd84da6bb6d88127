"""Fit the feature pipeline on the training split with Ray Data.

One streaming pass prepares the columns (coercion, category normalisation and synonyms, as
the fitted pipeline will apply them) and computes every statistic at once
(:mod:`pipelines.features.stats`): quantile sketches, means, standard deviations, null counts
and category counts. When scaling or feature selection is
configured, a second pass computes statistics of the features themselves
(:mod:`pipelines.features.select`). Only the statistics reach the driver, never the rows.

Every statistic comes from the Dataset this function is given — the training split — so
validation and test rows cannot move it (the unit tests check that).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pipelines.config import CleanConfig, ColumnImpute, FeaturesConfig
from pipelines.errors import RaypipeError
from pipelines.expressions import ExpressionError, check_expression
from pipelines.features.columns import ArrowColumns
from pipelines.features.pipeline import (
    BIN_SUFFIX,
    BinStats,
    CategoricalStats,
    ColumnKind,
    FeaturePipeline,
    Label,
    NumericStats,
    Task,
    _column_kind,
    _empty_frame,
    _label_key,
    _top_values,
    clean_strings,
    feature_name,
)
from pipelines.features.stats import ColumnStats, StatsPlan, collect_stats

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["FeatureConfigError", "drop_row_columns", "fit_feature_pipeline", "input_kinds"]

logger = logging.getLogger(__name__)

_TARGET = "__target__"


class FeatureConfigError(RaypipeError, ValueError):
    """The clean/features config does not fit the data; the message names the field."""


def input_kinds(schema: Any, target: str, clean: CleanConfig) -> dict[str, ColumnKind]:
    """Kind of every usable input column: read from the Arrow schema, or forced by coerce."""
    names = list(schema.names)
    for col in clean.coerce:
        if col not in names:
            raise FeatureConfigError(f"clean.coerce.{col}: no such column in the data")
        if col == target:
            raise FeatureConfigError(f"clean.coerce.{col}: the target cannot be coerced")
    kinds: dict[str, ColumnKind] = {}
    for name, typ in zip(names, schema.types, strict=True):
        if name == target:
            continue
        kind = clean.coerce.get(name) or _column_kind(typ)
        if kind is None:
            logger.warning("column %r has unsupported type %s; it is not used", name, typ)
            continue
        kinds[name] = kind
    return kinds


def _impute(col: str, kind: ColumnKind, clean: CleanConfig) -> ColumnImpute:
    if col in clean.impute_columns:
        imp = clean.impute_columns[col]
        if kind == "string" and imp.strategy in ("median", "mean"):
            raise FeatureConfigError(f"clean.impute_columns.{col}: {imp.strategy} needs a "
                                     "numeric column; this one is categorical")
        return imp
    return ColumnImpute(strategy=clean.impute_numeric if kind == "float"
                        else clean.impute_categorical)


def drop_row_columns(kinds: dict[str, ColumnKind], clean: CleanConfig,
                     features: FeaturesConfig) -> list[str]:
    """Feature columns whose missing values drop the training row (``drop_row``)."""
    used = [c for c, k in kinds.items() if c not in features.drop and k in ("float", "string")]
    return [c for c in used if _impute(c, kinds[c], clean).strategy == "drop_row"]


def _prepare(table: pa.Table, numeric: list[str], categorical: list[str], normalize: bool,
             synonyms: dict[str, dict[str, str]], target: str | None) -> pa.Table:
    """The columns as the fitted pipeline reads them: floats (missing as null) and cleaned text."""
    src = ArrowColumns(table)
    out: dict[str, Any] = {}
    for c in numeric:
        out[c] = pa.array(src.floats(c), from_pandas=True)  # NaN -> null, which aggregates skip
    for c in categorical:
        out[c] = clean_strings(src.strings(c), normalize, synonyms.get(c, {}))
    if target is not None:
        out[_TARGET] = table.column(target)
    return pa.table(out)


def _normalized_synonyms(clean: CleanConfig) -> dict[str, dict[str, str]]:
    def norm(v: str) -> str:
        return v.strip().lower() if clean.normalize_categories else v

    return {c: {norm(k): norm(v) for k, v in m.items()} for c, m in clean.synonyms.items()}


def _check_names(kinds: dict[str, ColumnKind], used: dict[str, ColumnKind], clean: CleanConfig,
                 features: FeaturesConfig) -> None:
    def need(field: str, cols: list[str], allowed: set[str], what: str) -> None:
        for c in cols:
            if c not in allowed:
                raise FeatureConfigError(f"{field}: {c!r} is not {what}")

    numeric = {c for c, k in used.items() if k == "float"}
    categorical = {c for c, k in used.items() if k == "string"}
    need("clean.impute_columns", list(clean.impute_columns), numeric | categorical,
         "a numeric or categorical feature column")
    need("clean.outlier_columns", clean.outlier_columns or [], numeric, "a numeric column")
    need("clean.synonyms", list(clean.synonyms), categorical, "a categorical column")
    need("features.encoding_columns", list(features.encoding_columns), categorical,
         "a categorical column")
    need("features.bins", [b.column for b in features.bins], numeric, "a numeric column")
    need("features.drop", features.drop, set(kinds) | set(clean.coerce), "a column")
    if isinstance(clean.missing_indicators, list):
        need("clean.missing_indicators", clean.missing_indicators, numeric | categorical,
             "a numeric or categorical feature column")
    for r in features.ratios:
        for part in (r.numerator, r.denominator):
            if kinds.get(part) != "float":
                raise FeatureConfigError(
                    f"features.ratios.{r.name}: {part!r} is not a numeric column")


def fit_feature_pipeline(
    train: Dataset,
    *,
    target: str,
    task: Task,
    clean: CleanConfig,
    features: FeaturesConfig,
    schema: Any | None = None,
) -> FeaturePipeline:
    """Fit every cleaning and feature statistic on ``train``; see the module doc.

    ``schema``: the training split's Arrow schema when the caller knows it (e.g. the source's,
    when only rows are filtered); otherwise Ray Data runs the first block of a lazy Dataset to
    find it.
    """
    schema = schema if schema is not None else train.schema()
    if schema is None:
        raise ValueError("the training split is empty")
    kinds = input_kinds(schema, target, clean)
    used = {c: k for c, k in kinds.items() if c not in features.drop}
    _check_names(kinds, used, clean, features)
    numeric = [c for c, k in used.items() if k == "float"]
    categorical = [c for c, k in used.items() if k == "string"]
    imputes = {c: _impute(c, used[c], clean) for c in numeric + categorical}
    outlier_cols = set(numeric if clean.outlier_columns is None else clean.outlier_columns)
    if clean.outliers == "none":
        outlier_cols = set()

    counted = [*categorical, *(c for c in numeric if imputes[c].strategy == "most_frequent")]
    if task != "regression":
        counted.append(_TARGET)
    synonyms = _normalized_synonyms(clean)
    prepared = train.map_batches(
        partial(_prepare, numeric=numeric, categorical=categorical,
                normalize=clean.normalize_categories, synonyms=synonyms,
                target=target if task != "regression" else None),
        batch_format="pyarrow", zero_copy_batch=True,
    )
    stats = collect_stats(prepared, StatsPlan(numeric=numeric, counted=counted))
    rows = stats.rows
    col = stats.columns

    def wants_indicator(c: str) -> bool:
        if isinstance(clean.missing_indicators, list):
            return c in clean.missing_indicators
        present = col[c].n if c in numeric else sum(col[c].counts.values())
        return clean.missing_indicators and present < rows

    numeric_stats = {
        c: _numeric_stats(c, col[c], imputes[c], clean, c in outlier_cols, wants_indicator(c))
        for c in numeric
    }
    cat_stats: dict[str, CategoricalStats] = {}
    for c in categorical:
        top = _top_values(col[c].top(), features.max_categories)
        vocab = [v for v, _ in top]
        imp = imputes[c]
        if imp.strategy in ("most_frequent", "drop_row") and vocab:
            fill = vocab[0]
        else:
            fill = str(imp.value) if imp.value is not None else clean.fill_value_categorical
            if fill not in vocab:
                vocab.append(fill)
        cat_stats[c] = CategoricalStats(
            fill=fill, vocab=vocab, encoding=features.encoding_columns.get(c),
            synonyms=synonyms.get(c, {}), indicator=wants_indicator(c))

    bins: list[BinStats] = []
    for b in features.bins:
        if b.method == "fixed":
            edges = list(b.edges or [])
        else:
            qs = col[b.column].quantiles([i / b.n_bins for i in range(1, b.n_bins)]) or []
            edges = sorted(set(qs))  # ties collapse to fewer bins
        bins.append(BinStats(column=b.column, edges=edges))

    classes: list[Label] | None = None
    if task != "regression":
        counter = col[_TARGET].top()
        classes = sorted((v for v in counter["values"] if v is not None), key=_label_key)
        classes = [v.item() if isinstance(v, np.generic) else v for v in classes]

    pipeline = FeaturePipeline(
        target=target,
        task=task,
        classes=classes,
        input_schema=kinds,
        optional_columns=[c for c in kinds if c not in used],
        numeric=numeric_stats,
        boolean=[c for c, k in used.items() if k == "bool"],
        categorical=cat_stats,
        datetime=[c for c, k in used.items() if k == "datetime"],
        datetime_parts=list(features.datetime_parts),
        ratios=list(features.ratios),
        derived=list(features.derived),
        bins=bins,
        encoding=features.categorical_encoding,
        hash_buckets=features.hash_buckets,
        normalize_categories=clean.normalize_categories,
        scaling=features.scaling,
        feature_names=[],
    )
    names = _checked_names(pipeline, features)
    pipeline = pipeline.model_copy(update={"feature_names": names})
    if features.scaling != "none" or features.selection.method != "none":
        from pipelines.features.select import select_and_scale

        pipeline = select_and_scale(train, pipeline, features)
    logger.info("fitted %d features on %d training rows", len(pipeline.feature_names), rows)
    return pipeline


def _numeric_stats(c: str, st: ColumnStats, imp: ColumnImpute, clean: CleanConfig,
                   bounded: bool, indicator: bool) -> NumericStats:
    found = st.quantiles([0.25, 0.5, 0.75])
    q1, med, q3 = (found[0], found[1], found[2]) if found else (None, None, None)
    mean = st.mean()
    if med is None:
        logger.warning("numeric column %r is empty in the training split", c)
    if imp.strategy == "most_frequent":
        top = _top_values(st.top(), 1)
        fill: Any = float(top[0][0]) if top else None
    elif imp.strategy == "constant":
        fill = clean.fill_value_numeric if imp.value is None else _as_number(c, imp.value)
    elif imp.strategy == "mean":
        fill = mean
    else:  # median; drop_row falls back to the median for rows met at inference
        fill = med
    lower = upper = None
    if bounded and clean.outliers == "iqr" and q1 is not None and q3 is not None:
        iqr = q3 - q1
        lower, upper = q1 - clean.iqr_factor * iqr, q3 + clean.iqr_factor * iqr
    elif bounded and clean.outliers == "zscore" and mean is not None:
        std = st.std() or 0.0
        lower, upper = mean - clean.zscore_threshold * std, mean + clean.zscore_threshold * std
    return NumericStats(
        fill=float(fill if fill is not None else clean.fill_value_numeric),
        lower=None if lower is None else float(lower),
        upper=None if upper is None else float(upper),
        indicator=indicator,
    )


def _as_number(c: str, value: float | str) -> float:
    try:
        return float(value)
    except ValueError:
        raise FeatureConfigError(
            f"clean.impute_columns.{c}.value: {value!r} is not a number") from None


def _checked_names(pipeline: FeaturePipeline, features: FeaturesConfig) -> list[str]:
    """The feature names, after checking derived expressions and name clashes."""
    empty = _empty_frame(pipeline.input_schema)
    base = pipeline.model_copy(update={"ratios": [], "derived": [], "bins": []})
    known = set(base._all_features(empty).columns) | {r.name for r in features.ratios}
    for d in features.derived:
        try:
            check_expression(d.name, d.expr, known)
        except ExpressionError as err:
            raise FeatureConfigError(f"features.derived.{d.name}: {err}") from None
        known.add(d.name)
    names = list(pipeline._all_features(empty).columns)
    base_names = set(base._all_features(empty).columns)
    mine = [r.name for r in features.ratios] + [d.name for d in features.derived] + [
        b.column + BIN_SUFFIX for b in features.bins]
    clashes = sorted({feature_name(m) for m in mine} & (base_names | set(pipeline.input_schema)))
    if clashes or len(set(names)) != len(names):
        dup = clashes or sorted({n for n in names if names.count(n) > 1})
        raise FeatureConfigError(
            f"features: name(s) already used by a column or feature: {', '.join(dup)}")
    return names
