"""The per-row split key: a pure function of the row and the seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.stages.split import SPLIT_KEY, split_key


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
