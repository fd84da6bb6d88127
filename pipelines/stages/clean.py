"""Row-level cleaning of the training split: duplicates, drop_row columns, outlier rows.

Value-level cleaning (imputation, outlier clipping, category spellings) is part of the fitted
feature pipeline, because it must be applied to every row at inference time too; removing rows
is not, because inference answers every row it is given. Rows removed here for a reason
(a missing value in a ``drop_row`` column, a value outside the fitted outlier bounds) are not
lost: they come back as a quarantine Dataset with the column and reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import CleanConfig, FeaturesConfig
from pipelines.features.columns import ArrowColumns
from pipelines.features.pipeline import FeaturePipeline

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["REASON_COLUMN", "CleanedTraining", "RoutedRows", "clean_and_fit", "drop_duplicates",
           "missing_reasons", "outlier_reasons", "route_rows", "row_hash", "row_hash_values"]

logger = logging.getLogger(__name__)

_HASH = "_raypipe_row_hash"
_KEY_HASH = "_raypipe_key_hash"
REASON_COLUMN = "_quarantine_reason"


def _canonical(s: pd.Series) -> pd.Series:
    # A batch with a null turns int64 into float64 and bool into object; hash one spelling.
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.astype("float64")
    nonnull = s.dropna()
    if s.dtype == object and len(nonnull) and nonnull.map(
        lambda v: isinstance(v, (bool, np.bool_))
    ).all():
        return pd.to_numeric(s, errors="coerce").astype("float64")
    return s


def row_hash_values(df: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (equal rows hash equal, across batches)."""
    canonical = df.apply(_canonical) if len(df.columns) else df
    return pd.util.hash_pandas_object(canonical, index=False).to_numpy(dtype=np.uint64)


def row_hash(df: pd.DataFrame) -> pd.DataFrame:
    """Add :func:`row_hash_values` as a column."""
    out = df.copy()
    out[_HASH] = row_hash_values(df)
    return out


def _key_hash(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    out = row_hash(df)
    keyed = df[key].apply(_canonical) if key else df[key]
    out[_KEY_HASH] = pd.util.hash_pandas_object(keyed, index=False).astype("uint64")
    return out


def _dedupe_block(df: pd.DataFrame, key: list[str] | None = None) -> pd.DataFrame:
    if key is None:
        return df.drop_duplicates(subset=[_HASH]).drop(columns=[_HASH])
    # Keep the row with the smallest content hash per key: the same row whatever the order
    # in which blocks arrive.
    ordered = df.sort_values([_KEY_HASH, _HASH], kind="stable")
    return ordered.drop_duplicates(subset=[_KEY_HASH]).drop(columns=[_HASH, _KEY_HASH])


_DRIVER_HASH_ROWS = 20_000_000
"""Up to this many rows, duplicates are found from the rows' hashes in the driver (8 bytes a
row) and only the rows of duplicated groups move; above it, by a hash shuffle of every row."""


def _hashed(df: pd.DataFrame, key: list[str] | None) -> pd.DataFrame:
    return _key_hash(df, key) if key is not None else row_hash(df)


def _in_groups(df: pd.DataFrame, column: str, groups: np.ndarray, inside: bool) -> pd.DataFrame:
    member = np.isin(df[column].to_numpy(dtype=np.uint64), groups)
    return df[member if inside else ~member]


def _drop_hash_columns(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in (_HASH, _KEY_HASH) if c in df.columns])


def drop_duplicates(ds: Dataset, num_blocks: int = 8, key: list[str] | None = None,
                    driver_rows: int = _DRIVER_HASH_ROWS) -> Dataset:
    """Drop duplicate rows across the whole Dataset: equal on every column, or on ``key``.

    Each row is hashed (its content, and its key); the driver counts the hashes and finds the
    groups that occur more than once. Rows of other groups stay where they are; only the rows
    of duplicated groups are gathered into one block and reduced to one row per group (the
    row with the smallest content hash, so the same row whatever the block order). No
    shuffle: a hash shuffle costs seconds of actor start-up on a small cluster even for a few
    thousand rows. Past ``driver_rows`` rows the hashes are not gathered; rows are
    hash-partitioned on the group into ``num_blocks`` instead, so duplicates meet in the same
    block.
    """
    if key is not None:
        missing = [c for c in key if c not in (ds.columns() or [])]
        if missing:
            raise ValueError(f"clean.dedupe_key: no such column(s): {', '.join(missing)}")
    group = _HASH if key is None else _KEY_HASH
    hashed = ds.map_batches(partial(_hashed, key=key), batch_format="pandas").materialize()
    rows = hashed.count()
    if rows == 0:
        return ds.materialize()
    if rows > driver_rows:
        parted = hashed.repartition(num_blocks, keys=[group])
        return parted.map_batches(partial(_dedupe_block, key=key), batch_format="pandas",
                                  batch_size=None).materialize()
    counts = hashed.select_columns([group]).to_pandas()[group].value_counts()
    repeated = np.sort(counts.index[counts.to_numpy() > 1].to_numpy(dtype=np.uint64))
    unique = (hashed.map_batches(partial(_in_groups, column=group, groups=repeated, inside=False),
                                 batch_format="pandas")
              .map_batches(_drop_hash_columns, batch_format="pandas"))
    if not len(repeated):
        return unique.materialize()
    kept = (hashed.map_batches(partial(_in_groups, column=group, groups=repeated, inside=True),
                               batch_format="pandas")
            .repartition(1)
            .map_batches(partial(_dedupe_block, key=key), batch_format="pandas", batch_size=None))
    return unique.union(kept).materialize()


# ---------------------------------------------------------------- rows routed to quarantine


@dataclass(frozen=True)
class RoutedRows:
    """Rows that stay, rows quarantined (with ``_quarantine_reason``), and their counts."""

    kept: Dataset
    quarantined: Dataset
    rows_kept: int
    rows_quarantined: int


def _first_reason(reasons: list[tuple[np.ndarray, list[str] | str]], n: int) -> np.ndarray:
    out = np.full(n, None, dtype=object)
    for bad, why in reasons:
        new = bad & pd.isna(out)
        if new.any():
            out[new] = why if isinstance(why, str) else np.asarray(why, dtype=object)[new]
    return out


def missing_reasons(table: pa.Table, columns: list[str]) -> np.ndarray:
    """Per row: None, or why it is dropped (the first ``drop_row`` column that is missing)."""
    src = ArrowColumns(table)
    reasons: list[tuple[np.ndarray, list[str] | str]] = []
    for c in columns:
        col = table.column(c)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            missing = np.isnan(src.floats(c))
        else:
            missing = pc.is_null(col).to_numpy(zero_copy_only=False)
        reasons.append((np.asarray(missing, dtype=bool),
                        f"clean: {c}: missing value (impute strategy drop_row)"))
    return _first_reason(reasons, table.num_rows)


def outlier_reasons(table: pa.Table, pipeline: FeaturePipeline) -> np.ndarray:
    """Per row: None, or the first numeric value outside its fitted outlier bounds."""
    src = ArrowColumns(table)
    reasons: list[tuple[np.ndarray, list[str] | str]] = []
    for c, st in pipeline.numeric.items():
        if st.lower is None or st.upper is None:
            continue
        v = src.floats(c)
        with np.errstate(invalid="ignore"):
            bad = (v < st.lower) | (v > st.upper)
        if bad.any():
            why = [f"clean: {c}: outlier {x!r} outside [{st.lower:.6g}, {st.upper:.6g}]"
                   if b else "" for x, b in zip(v.tolist(), bad, strict=True)]
            reasons.append((bad, why))
    return _first_reason(reasons, table.num_rows)


def _tag(table: pa.Table, reasons: Callable[[pa.Table], np.ndarray]) -> pa.Table:
    why = reasons(table)
    return table.append_column(REASON_COLUMN, pa.array(why.tolist(), type=pa.string()))


def _rows(table: pa.Table, quarantined: bool) -> pa.Table:
    bad = pc.is_valid(table.column(REASON_COLUMN))
    picked = table.filter(bad if quarantined else pc.invert(bad))
    return picked if quarantined else picked.drop_columns([REASON_COLUMN])


def route_rows(ds: Dataset, reasons: Callable[[pa.Table], np.ndarray]) -> RoutedRows:
    """Split ``ds`` on ``reasons`` (a per-row reason or None); nothing is lost.

    The tagged rows are materialised once so that both outputs read the same rows and the
    counts are checked to add up.
    """
    tagged = ds.map_batches(partial(_tag, reasons=reasons), batch_format="pyarrow").materialize()
    kept = tagged.map_batches(partial(_rows, quarantined=False), batch_format="pyarrow")
    quarantined = tagged.map_batches(partial(_rows, quarantined=True), batch_format="pyarrow")
    kept, quarantined = kept.materialize(), quarantined.materialize()
    total, n_kept, n_bad = tagged.count(), kept.count(), quarantined.count()
    if n_kept + n_bad != total:
        raise RuntimeError(f"row routing lost rows: {total} in, {n_kept} kept, {n_bad} "
                           "quarantined")
    return RoutedRows(kept, quarantined, n_kept, n_bad)


# ---------------------------------------------------------------- the training-split stage


@dataclass(frozen=True)
class CleanedTraining:
    """The fitted pipeline, the training rows it trains on, and the rows removed with a reason."""

    pipeline: FeaturePipeline
    train: Dataset
    quarantined: list[Dataset]
    counts: dict[str, int]


def clean_and_fit(train: Dataset, *, target: str, task: str, clean: CleanConfig,
                  features: FeaturesConfig) -> CleanedTraining:
    """Row cleaning of the training split, then the fit of the feature pipeline on it.

    Order: dedupe (all columns or ``dedupe_key``); drop rows missing a ``drop_row`` column
    (quarantined with the reason); fit every statistic on the remaining rows; with
    ``outlier_action: quarantine``, route rows outside the fitted bounds to quarantine.
    """
    from pipelines.features.fit import drop_row_columns, fit_feature_pipeline, input_kinds

    counts: dict[str, int] = {}
    quarantined: list[Dataset] = []
    if clean.dedupe:
        train = drop_duplicates(train, key=clean.dedupe_key)
        counts["rows_train_deduped"] = train.count()
    schema = train.schema()
    if schema is None:
        raise ValueError("the training split is empty")
    drop_cols = drop_row_columns(input_kinds(schema, target, clean), clean, features)
    if drop_cols:
        routed = route_rows(train, partial(missing_reasons, columns=drop_cols))
        train = routed.kept
        counts["rows_train_dropped_missing"] = routed.rows_quarantined
        quarantined.append(routed.quarantined)
    pipeline = fit_feature_pipeline(train, target=target, task=task,  # type: ignore[arg-type]
                            clean=clean, features=features)
    if clean.outliers != "none" and clean.outlier_action == "quarantine":
        routed = route_rows(train, partial(outlier_reasons, pipeline=pipeline))
        train = routed.kept
        counts["rows_train_outliers_quarantined"] = routed.rows_quarantined
        quarantined.append(routed.quarantined)
    if quarantined:
        logger.info("training rows removed by cleaning: %s", counts)
    return CleanedTraining(pipeline, train, quarantined, counts)
