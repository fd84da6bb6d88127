"""Row-level cleaning of the training split: exact duplicates are dropped.

Value-level cleaning (imputation, outlier clipping, category spellings) is part of the fitted
feature pipeline, because it must be applied to every row at inference time too; dropping rows
is not, because inference answers every row it is given.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["drop_duplicates", "row_hash"]

logger = logging.getLogger(__name__)

_HASH = "_raypipe_row_hash"


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


def row_hash(df: pd.DataFrame) -> pd.DataFrame:
    """Add a 64-bit hash of each row's values (equal rows hash equal, across batches)."""
    out = df.copy()
    canonical = df.apply(_canonical) if len(df.columns) else df
    out[_HASH] = pd.util.hash_pandas_object(canonical, index=False).astype("uint64")
    return out


def _dedupe_block(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop_duplicates(subset=[_HASH]).drop(columns=[_HASH])


def drop_duplicates(ds: Dataset, num_blocks: int = 8) -> Dataset:
    """Drop exact duplicate rows across the whole Dataset.

    Rows are hash-partitioned on their content, so duplicates meet in the same block and each
    block is deduplicated on its own: one shuffle, no driver-side collection.
    """
    hashed = ds.map_batches(row_hash, batch_format="pandas")
    parted = hashed.repartition(num_blocks, keys=[_HASH])
    return parted.map_batches(_dedupe_block, batch_format="pandas", batch_size=None).materialize()
