"""Unit tests for pipelines.stages.clean.row_hash (the key for cross-batch deduplication)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.stages.clean import row_hash

HASH = "_raypipe_row_hash"


def sample() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "a", "c"],
            "x": [1.0, 2.0, 1.0, np.nan],
            "n": [1, 2, 1, 3],
            "flag": [True, False, True, True],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-03"]),
        }
    )


def test_adds_uint64_column_and_keeps_input() -> None:
    df = sample()
    out = row_hash(df)
    assert HASH not in df.columns
    assert list(out.columns) == [*df.columns, HASH]
    assert out[HASH].dtype == np.uint64
    pd.testing.assert_frame_equal(out.drop(columns=[HASH]), df)


def test_equal_rows_hash_equal() -> None:
    h = row_hash(sample())[HASH]
    assert h.iloc[0] == h.iloc[2]


def test_different_rows_hash_different() -> None:
    h = row_hash(sample())[HASH]
    assert h.iloc[[0, 1, 3]].nunique() == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [("id", "z"), ("x", 1.5), ("n", 9), ("flag", False), ("when", pd.Timestamp("2025-01-01"))],
)
def test_any_single_value_change_changes_the_hash(column: str, value: object) -> None:
    df = sample().iloc[[0]].copy()
    changed = df.copy()
    changed.loc[changed.index[0], column] = value
    assert row_hash(df)[HASH].iloc[0] != row_hash(changed)[HASH].iloc[0]


def test_hash_ignores_the_index() -> None:
    df = sample()
    moved = df.set_axis([100, 200, 300, 400])
    assert row_hash(df)[HASH].tolist() == row_hash(moved)[HASH].tolist()


def test_hash_is_stable_across_calls() -> None:
    assert row_hash(sample())[HASH].tolist() == row_hash(sample())[HASH].tolist()


def test_same_row_in_different_batches_hashes_equal() -> None:
    df = sample()
    batch_a = df.iloc[[0, 1]].reset_index(drop=True)
    batch_b = pd.concat([df.iloc[[3]], df.iloc[[2]]], ignore_index=True)  # row 2 == row 0
    ha = row_hash(batch_a)[HASH]
    hb = row_hash(batch_b)[HASH]
    assert ha.iloc[0] == hb.iloc[1]
    assert hb.iloc[0] not in set(ha)


def test_missing_values_hash_consistently_across_batches() -> None:
    a = pd.DataFrame({"s": ["x", None], "v": [np.nan, 1.0]})
    b = pd.DataFrame({"s": [None, "y", "x"], "v": [1.0, 2.0, np.nan]})
    ha, hb = row_hash(a)[HASH], row_hash(b)[HASH]
    assert ha.iloc[0] == hb.iloc[2]
    assert ha.iloc[1] == hb.iloc[0]


def test_string_storage_does_not_change_the_hash() -> None:
    a = pd.DataFrame({"s": pd.Series(["x", "y"], dtype=object)})
    b = pd.DataFrame({"s": pd.Series(["y", "x"], dtype="string")})
    assert row_hash(a)[HASH].iloc[0] == row_hash(b)[HASH].iloc[1]


def test_int_column_with_nulls_in_another_batch_hashes_equal() -> None:
    a = pd.DataFrame({"n": pd.Series([1, 2], dtype="int64")})
    b = pd.DataFrame({"n": pd.Series([1.0, np.nan], dtype="float64")})  # same row 0
    assert row_hash(a)[HASH].iloc[0] == row_hash(b)[HASH].iloc[0]
