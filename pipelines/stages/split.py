"""Split: divide validated rows into train / valid / test, seeded, reproducible, stratified.

Every row gets a seeded pseudo-random key computed from its own content (as TFX's ExampleGen
buckets rows by a hash), and the key alone decides the row's split: one pass over the data,
no sort and no shuffle. The split therefore depends only on the data and the seed — not on
how Ray Data happened to order blocks — and exact duplicate rows share a key, so they always
land in the same split instead of leaking from train into test.

The cut points are not fixed fractions of the key range but quantiles of the keys actually
present, per class when stratified: a summary pass counts rows per (class, key bucket), and
the cuts are placed on those counts. Every split then keeps each class's share to within one
bucket (1/65,536 of the class), however few rows a class has.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.config import SplitConfig
from pipelines.errors import RaypipeError
from pipelines.stages.clean import row_hash_values

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["SPLIT_KEY", "SplitError", "distinct_values", "split_cuts", "split_dataset",
           "split_key"]

logger = logging.getLogger(__name__)

SPLIT_KEY = "_raypipe_split_key"
_BUCKET_BITS = 16
_GROUP, _BUCKET, _ROWS = "group", "bucket", "rows"


class SplitError(RaypipeError, ValueError):
    """The data cannot be split as configured."""


def _key_values(df: pd.DataFrame, seed: int) -> np.ndarray:
    salt = int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "little")
    # Mixing by multiplication keeps the key uniform; the salt makes each seed a new order.
    key = (row_hash_values(df) ^ np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    return key.astype(np.uint64)


def split_key(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Add the seeded per-row key: a 64-bit hash of the row's values mixed with the seed."""
    out = df.copy()
    out[SPLIT_KEY] = _key_values(df, seed)
    return out


def _as_pandas(batch: pa.Table) -> pd.DataFrame:
    # Ray Data's own Arrow -> pandas conversion (its DataContext decides the dtypes), so a key
    # is the same whether the row arrived as Arrow here or as a pandas batch elsewhere.
    from ray.data.block import BlockAccessor

    return BlockAccessor.for_block(batch).to_pandas()


def _keyed_block(batch: pa.Table, seed: int) -> pa.Table:
    """``batch`` plus its key column: the rows go to pandas only to be hashed, and stay Arrow."""
    return batch.append_column(SPLIT_KEY, pa.array(_key_values(_as_pandas(batch), seed),
                                                   type=pa.uint64()))


def _buckets(batch: pa.Table) -> np.ndarray:
    keys = batch.column(SPLIT_KEY).to_numpy()
    return (keys.astype(np.uint64) >> np.uint64(64 - _BUCKET_BITS)).astype(np.int64)


def _groups(batch: pa.Table, group: str | None) -> pd.Series:
    if group is None:
        return pd.Series(np.zeros(batch.num_rows, dtype=np.int64))
    return _as_pandas(batch.select([group]))[group]


def _bucket_counts(batch: pa.Table, group: str | None) -> pd.DataFrame:
    """Rows per (group, key bucket) of one batch: the summary the cuts are placed on."""
    keys = pd.DataFrame({_GROUP: _groups(batch, group).to_numpy(), _BUCKET: _buckets(batch)})
    counts = keys.groupby([_GROUP, _BUCKET], dropna=False, sort=False).size()
    return counts.rename(_ROWS).reset_index()


def split_cuts(counts: pd.DataFrame, cfg: SplitConfig) -> dict[Any, tuple[int, int]]:
    """Per group, the two bucket cuts: train < first <= valid < second <= test.

    Each cut is the bucket boundary whose share of the group's rows is nearest to the
    configured fraction (the first such boundary on a tie, so the cuts are deterministic).
    """
    cuts: dict[Any, tuple[int, int]] = {}
    for value, part in counts.groupby(_GROUP, dropna=False, sort=False):
        hist = np.zeros(2**_BUCKET_BITS, dtype=np.int64)
        np.add.at(hist, part[_BUCKET].to_numpy(), part[_ROWS].to_numpy())
        below = np.concatenate([[0], np.cumsum(hist)])  # rows in buckets < i
        total = below[-1]
        first = int(np.argmin(np.abs(below - cfg.train * total)))
        second = int(np.argmin(np.abs(below[first:] - (cfg.train + cfg.valid) * total))) + first
        cuts[value] = (first, second)
    return cuts


def _part(batch: pa.Table, group: str | None, cuts: dict[Any, tuple[int, int]],
          index: int) -> pa.Table:
    """The rows of split ``index`` (0 train, 1 valid, 2 test), filtered in Arrow."""
    bucket, groups = _buckets(batch), _groups(batch, group)
    first = groups.map({k: c[0] for k, c in cuts.items()}).to_numpy(dtype=np.int64)
    second = groups.map({k: c[1] for k, c in cuts.items()}).to_numpy(dtype=np.int64)
    keep = ((bucket < first) if index == 0 else
            (bucket >= first) & (bucket < second) if index == 1 else bucket >= second)
    return batch.filter(pa.array(keep)).drop_columns([SPLIT_KEY])


def _distinct(batch: pa.Table, column: str) -> pa.Table:
    import pyarrow.compute as pc

    return pa.table({column: pc.unique(batch.column(column))})


def distinct_values(ds: Dataset, column: str) -> list[Any]:
    """The distinct values of ``column``, nulls left out, sorted.

    Each batch reduces to its own distinct values and the driver unions them: one pass, no
    shuffle (``Dataset.unique`` costs a hash shuffle, seconds of fixed cost on a small
    cluster, for a column that holds a handful of labels).
    """
    per_batch = ds.select_columns([column]).map_batches(
        partial(_distinct, column=column), batch_format="pyarrow", zero_copy_batch=True
    ).to_pandas()
    return sorted(per_batch[column].dropna().drop_duplicates().tolist())


def _missing_counts(table: pa.Table, column: str) -> pa.Table:
    return pa.table({"missing": [table.column(column).null_count]})


def _check_time_column(ds: Dataset, col: str) -> None:
    if col not in (ds.columns() or []):
        raise SplitError(f"split.time_column {col!r} is not a column of the data")
    # Counted per block and summed here: Ray's aggregate runs a hash shuffle (aggregator
    # actors, ~6 s of fixed cost on 2 cores) for one number.
    missing = int(ds.select_columns([col]).map_batches(
        partial(_missing_counts, column=col), batch_format="pyarrow", batch_size=None,
        zero_copy_batch=True).to_pandas()["missing"].sum())
    if missing:
        raise SplitError(
            f"{missing} row(s) have no {col!r}, so they cannot be placed in time; declare "
            f"schema.columns.{col}.nullable: false to quarantine them"
        )


def _time_split(keyed: Dataset, cfg: SplitConfig) -> list[Dataset]:
    assert cfg.time_column is not None
    ordered = keyed.sort([cfg.time_column, SPLIT_KEY])  # the key breaks ties in time
    return [part.drop_columns([SPLIT_KEY]) for part in
            ordered.split_proportionately([cfg.train, cfg.valid])]


def split_dataset(
    ds: Dataset, cfg: SplitConfig, target: str, classification: bool,
    labels: list[Any] | None = None,
) -> tuple[Dataset, Dataset, Dataset]:
    """Return (train, valid, test).

    * stratified (classification): each class is cut on its own key buckets, so every
      split keeps the class shares of the whole;
    * random, and stratified on a regression target: one set of cuts for all rows;
    * time: rows ordered by ``time_column`` (key breaks ties): no training row is later than
      a validation row, and no validation row later than a test row.

    ``labels`` are the target's distinct values when the caller already has them.

    The random and stratified parts are lazy filters of the keyed rows, which are materialised
    once: each part is computed when the caller consumes it (the pipeline writes each part
    once; materialising them here as well cost three more Ray Data executions).
    """
    if classification:
        labels = distinct_values(ds, target) if labels is None else labels
        if len(labels) < 2:
            found = f"only {labels[0]!r}" if labels else "no value"
            raise SplitError(
                f"target {target!r} holds {found} in the rows that passed validation: a "
                "classification model needs at least two classes (check the data, or set "
                "task: regression for a numeric target)")
    # Arrow batches throughout: only the hashing needs pandas, and the rows stay Arrow (at 1M
    # rows each pandas round trip of every column cost seconds per pass).
    keyed = ds.map_batches(partial(_keyed_block, seed=cfg.seed), batch_format="pyarrow",
                           zero_copy_batch=True)
    if cfg.strategy == "time":
        assert cfg.time_column is not None
        _check_time_column(ds, cfg.time_column)
        train, valid, test = _time_split(keyed, cfg)
    else:
        keyed = keyed.materialize()
        group = target if cfg.strategy == "stratified" and classification else None
        counts = keyed.select_columns([c for c in (group, SPLIT_KEY) if c]).map_batches(
            partial(_bucket_counts, group=group), batch_format="pyarrow",
            zero_copy_batch=True).to_pandas()
        cuts = split_cuts(counts, cfg)
        train, valid, test = (
            keyed.map_batches(partial(_part, group=group, cuts=cuts, index=i),
                              batch_format="pyarrow", zero_copy_batch=True)
            for i in range(3))
    return train, valid, test
