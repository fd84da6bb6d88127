"""Split: divide validated rows into train / valid / test, seeded, reproducible, stratified.

Every row gets a seeded pseudo-random key computed from its own content, then rows are
ordered by that key and cut by the fractions. The split therefore depends only on the data and
the seed — not on how Ray Data happened to order blocks — and exact duplicate rows share a key,
so they sit next to each other and (away from a cut) land in the same split instead of
leaking from train into test.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.config import SplitConfig
from pipelines.stages.clean import row_hash

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["SPLIT_KEY", "SplitError", "split_dataset", "split_key"]

logger = logging.getLogger(__name__)

SPLIT_KEY = "_raypipe_split_key"
_HASH = "_raypipe_row_hash"


class SplitError(ValueError):
    """The data cannot be split as configured."""


def split_key(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Add the seeded per-row key: a 64-bit hash of the row's values mixed with the seed."""
    hashed = row_hash(df)
    salt = int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "little")
    out = hashed.drop(columns=[_HASH])
    # Mixing by multiplication keeps the key uniform; the salt makes each seed a new order.
    out[SPLIT_KEY] = (hashed[_HASH].to_numpy() ^ salt) * 0x9E3779B97F4A7C15 & (2**64 - 1)
    out[SPLIT_KEY] = out[SPLIT_KEY].astype("uint64")
    return out


def _rows_with_label(df: pd.DataFrame, target: str, value: Any) -> pd.DataFrame:
    return df[df[target] == value]


def _cut(ds: Dataset, cfg: SplitConfig, order: list[str]) -> list[Dataset]:
    ordered = ds.sort(order)
    return [part.drop_columns([SPLIT_KEY]) for part in
            ordered.split_proportionately([cfg.train, cfg.valid])]


def _check_time_column(ds: Dataset, col: str) -> None:
    from ray.data.aggregate import Count

    if col not in (ds.columns() or []):
        raise SplitError(f"split.time_column {col!r} is not a column of the data")
    stats = ds.aggregate(Count(alias_name="rows"),
                         Count(on=col, ignore_nulls=True, alias_name="present"))
    missing = int(stats["rows"]) - int(stats["present"])
    if missing:
        raise SplitError(
            f"{missing} row(s) have no {col!r}, so they cannot be placed in time; declare "
            f"schema.columns.{col}.nullable: false to quarantine them"
        )


def split_dataset(
    ds: Dataset, cfg: SplitConfig, target: str, classification: bool
) -> tuple[Dataset, Dataset, Dataset]:
    """Return (train, valid, test).

    * stratified (classification): each class is ordered by key and cut on its own, so every
      split keeps the class shares of the whole (exactly, up to one row per class);
    * random, and stratified on a regression target: one order by key, one cut;
    * time: rows ordered by ``time_column`` (key breaks ties): no training row is later than
      a validation row, and no validation row later than a test row.
    """
    labels = sorted(ds.unique(target)) if classification else []
    if classification and len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "no value"
        raise SplitError(f"target {target!r} holds {found} in the rows that passed validation: "
                         "a classification model needs at least two classes (check the data, "
                         "or set task: regression for a numeric target)")
    keyed = ds.map_batches(partial(split_key, seed=cfg.seed), batch_format="pandas")
    if cfg.strategy == "time":
        assert cfg.time_column is not None
        _check_time_column(ds, cfg.time_column)
        train, valid, test = _cut(keyed, cfg, [cfg.time_column, SPLIT_KEY])
    elif cfg.strategy == "stratified" and classification:
        keyed = keyed.materialize()
        parts = [
            _cut(keyed.map_batches(partial(_rows_with_label, target=target, value=value),
                                   batch_format="pandas"), cfg, [SPLIT_KEY])
            for value in labels
        ]
        train, valid, test = (
            parts[0][i].union(*[p[i] for p in parts[1:]]) if len(parts) > 1 else parts[0][i]
            for i in range(3)
        )
    else:
        train, valid, test = _cut(keyed, cfg, [SPLIT_KEY])
    return train.materialize(), valid.materialize(), test.materialize()
