"""The per-row split key: a pure function of the row and the seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.config import SplitConfig
from pipelines.stages.split import (
    SPLIT_KEY,
    _bucket_counts,
    _keyed_block,
    _part,
    split_cuts,
    split_key,
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0], "b": ["x", "y", None, "x"]})


def test_key_depends_on_row_content_not_position() -> None:
    df = _frame()
    keys = split_key(df, 42)[SPLIT_KEY]
    reversed_keys = split_key(df.iloc[::-1].reset_index(drop=True), 42)[SPLIT_KEY]
    assert list(keys) == list(reversed_keys[::-1])
    assert keys.nunique() == len(df)


def test_equal_rows_share_a_key_and_seeds_reorder() -> None:
    df = pd.concat([_frame(), _frame().iloc[[0]]], ignore_index=True)
    keys = split_key(df, 1)[SPLIT_KEY]
    assert keys.iloc[0] == keys.iloc[-1]
    other = split_key(df, 2)[SPLIT_KEY]
    assert not (keys == other).any()


def test_key_is_roughly_uniform() -> None:
    df = pd.DataFrame({"i": np.arange(20_000, dtype=float)})
    u = split_key(df, 7)[SPLIT_KEY].to_numpy().astype(np.float64) / 2.0**64
    assert abs(u.mean() - 0.5) < 0.01
    assert abs((u < 0.7).mean() - 0.7) < 0.01


def test_original_columns_are_kept() -> None:
    out = split_key(_frame(), 3)
    assert list(out.columns) == ["a", "b", SPLIT_KEY]
    pd.testing.assert_frame_equal(out[["a", "b"]], _frame())


def _assign(df: pd.DataFrame, cfg: SplitConfig, group: str | None) -> list[pd.DataFrame]:
    keyed = _keyed_block(pa.Table.from_pandas(df, preserve_index=False), cfg.seed)
    cuts = split_cuts(_bucket_counts(keyed, group), cfg)
    return [_part(keyed, group, cuts, i).to_pandas() for i in range(3)]


def test_arrow_block_key_equals_the_pandas_key() -> None:
    """The pipeline keys Arrow batches; the key must not depend on the batch format."""
    df = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": ["x", None, "x"], "c": [1, 2, 3],
                       "d": [True, False, True]})
    arrow = _keyed_block(pa.Table.from_pandas(df, preserve_index=False), 5)
    assert arrow.column_names == ["a", "b", "c", "d", SPLIT_KEY]
    assert arrow.column(SPLIT_KEY).to_pylist() == split_key(df, 5)[SPLIT_KEY].tolist()


def test_bucket_cuts_keep_every_class_share_even_for_a_rare_class() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=5000), "y": ["a"] * 4960 + ["rare"] * 40})
    train, valid, test = _assign(df, SplitConfig(), "y")
    assert len(train) + len(valid) + len(test) == len(df)
    for part, share in ((train, 0.7), (valid, 0.15), (test, 0.15)):
        assert (part["y"] == "rare").sum() == round(40 * share)
        assert abs((part["y"] == "a").sum() - 4960 * share) <= 1
    assert SPLIT_KEY not in train.columns


def test_duplicate_rows_land_in_one_split_and_cuts_are_deterministic() -> None:
    df = pd.DataFrame({"x": np.arange(300.0) % 100, "y": np.arange(300) % 2})
    parts = _assign(df, SplitConfig(seed=3), None)
    seen = [set(p["x"]) for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    again = _assign(df.sample(frac=1, random_state=0), SplitConfig(seed=3), None)
    assert [sorted(p["x"]) for p in parts] == [sorted(p["x"]) for p in again]
