"""Split: divide validated rows into train / valid / test, seeded and (optionally) stratified."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.config import SplitConfig

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["SplitError", "split_dataset"]

logger = logging.getLogger(__name__)


def _rows_with_label(df: pd.DataFrame, target: str, value: Any) -> pd.DataFrame:
    return df[df[target] == value]


def _split_one(ds: Dataset, cfg: SplitConfig) -> list[Dataset]:
    shuffled = ds.random_shuffle(seed=cfg.seed)
    return list(shuffled.split_proportionately([cfg.train, cfg.valid]))


class SplitError(ValueError):
    """The data cannot be split as configured."""


def _split_by_time(ds: Dataset, cfg: SplitConfig) -> tuple[Dataset, Dataset, Dataset]:
    """Oldest rows train, newest rows test: a global sort, then cut by the fractions."""
    col = cfg.time_column
    assert col is not None
    if col not in (ds.columns() or []):
        raise SplitError(f"split.time_column {col!r} is not a column of the data")
    from ray.data.aggregate import Count

    stats = ds.aggregate(Count(alias_name="rows"),
                         Count(on=col, ignore_nulls=True, alias_name="present"))
    missing = int(stats["rows"]) - int(stats["present"])
    if missing:
        raise SplitError(
            f"{missing} row(s) have no {col!r}, so they cannot be placed in time; declare "
            f"schema.columns.{col}.nullable: false to quarantine them"
        )
    train, valid, test = ds.sort(col).split_proportionately([cfg.train, cfg.valid])
    return train.materialize(), valid.materialize(), test.materialize()


def split_dataset(
    ds: Dataset, cfg: SplitConfig, target: str, classification: bool
) -> tuple[Dataset, Dataset, Dataset]:
    """Return (train, valid, test).

    Stratified splitting shuffles and splits each class on its own, so every split keeps the
    class shares of the whole (exactly, up to one row per class); regression targets fall back
    to a random split. Time splitting orders rows by ``time_column``: no training row is later
    than a validation row, and no validation row later than a test row.
    """
    if cfg.strategy == "time":
        return _split_by_time(ds, cfg)
    if cfg.strategy == "stratified" and classification:
        parts: list[list[Dataset]] = []
        for value in sorted(ds.unique(target)):
            of_class = ds.map_batches(
                partial(_rows_with_label, target=target, value=value), batch_format="pandas"
            )
            parts.append(_split_one(of_class, cfg))
        train, valid, test = (
            parts[0][i].union(*[p[i] for p in parts[1:]]) if len(parts) > 1 else parts[0][i]
            for i in range(3)
        )
    else:
        train, valid, test = _split_one(ds, cfg)
    return train.materialize(), valid.materialize(), test.materialize()
