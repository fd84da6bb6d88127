"""Unit tests for pipelines.demo: the generated demo data set carries the intended problems."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from pipelines.demo import DEMO_TARGET, generate_demo_frame, write_demo_parquet
from pipelines.storage import StoragePath

ROWS = 5_000
SEED = 7
CATEGORY_COLUMNS = ["plan", "region", "payment_method"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_demo_frame(ROWS, SEED)


def test_same_seed_gives_equal_frames(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(frame, generate_demo_frame(ROWS, SEED))


def test_different_seed_gives_different_data(frame: pd.DataFrame) -> None:
    other = generate_demo_frame(ROWS, SEED + 1)
    assert len(other) == len(frame)
    assert not frame.equals(other)
    assert not frame["monthly_charges"].equals(other["monthly_charges"])


@pytest.mark.parametrize("rows", [100, 999, ROWS])
def test_row_count_equals_rows(rows: int) -> None:
    assert len(generate_demo_frame(rows, SEED)) == rows


def test_columns_and_target(frame: pd.DataFrame) -> None:
    assert DEMO_TARGET == "churned"
    assert DEMO_TARGET in frame.columns
    assert set(frame[DEMO_TARGET].unique()) == {0, 1}
    assert frame.index.equals(pd.RangeIndex(ROWS))


def test_has_exact_duplicate_rows(frame: pd.DataFrame) -> None:
    # About 1% of the rows are copies of others.
    assert frame.duplicated().sum() == ROWS // 100


@pytest.mark.parametrize("column", ["monthly_charges", "plan"])
def test_missing_values(frame: pd.DataFrame, column: str) -> None:
    share = frame[column].isna().mean()
    assert 0.005 < share < 0.1


def test_target_has_no_missing_values(frame: pd.DataFrame) -> None:
    assert frame[DEMO_TARGET].notna().all()


@pytest.mark.parametrize("column", CATEGORY_COLUMNS)
def test_odd_category_spellings(frame: pd.DataFrame, column: str) -> None:
    values = frame[column].dropna().astype(str)
    normalized = values.str.strip().str.lower()
    assert (values != values.str.strip()).any(), "no whitespace-padded values"
    assert (values.str.strip() != normalized).any(), "no re-cased values"
    # The variants collapse to a small canonical vocabulary.
    assert normalized.nunique() <= 4
    assert values.nunique() > normalized.nunique()


def test_class_imbalance(frame: pd.DataFrame) -> None:
    positive = frame[DEMO_TARGET].mean()
    assert 0.05 < positive < 0.35


def test_negative_tenure_rows_present(frame: pd.DataFrame) -> None:
    negative = frame["tenure_months"] < 0
    assert negative.any()
    assert (frame.loc[negative, "tenure_months"] == -1.0).all()
    assert negative.mean() < 0.01


def test_total_charges_outliers_present(frame: pd.DataFrame) -> None:
    charges = frame["total_charges"].dropna()
    q1, q3 = charges.quantile([0.25, 0.75])
    assert (charges > q3 + 3 * (q3 - q1)).any()


@pytest.mark.parametrize("column", ["signup_date", "last_login"])
def test_datetime_columns(frame: pd.DataFrame, column: str) -> None:
    assert pd.api.types.is_datetime64_any_dtype(frame[column])
    assert frame[column].notna().all()


def test_column_types(frame: pd.DataFrame) -> None:
    assert pd.api.types.is_bool_dtype(frame["autopay"])
    assert pd.api.types.is_integer_dtype(frame[DEMO_TARGET])
    for col in ["tenure_months", "monthly_charges", "total_charges", "support_calls"]:
        assert pd.api.types.is_float_dtype(frame[col]), col


def _read(path: StoragePath) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(path.read_bytes()))


def test_write_demo_parquet_writes_once_and_reuses(store_root: StoragePath) -> None:
    directory = store_root / "data" / "nested"
    path = write_demo_parquet(directory, 200, SEED)

    assert path.is_file()
    assert path.parent == directory
    assert path.name == f"demo-200-{SEED}.parquet"
    assert list(directory.files()) == [path.name]  # no temporary file left behind
    pd.testing.assert_frame_equal(_read(path), generate_demo_frame(200, SEED), check_dtype=False)

    # A second call reuses the existing file rather than regenerating it.
    buf = io.BytesIO()
    pd.DataFrame({"sentinel": [1, 2, 3]}).to_parquet(buf, index=False)
    path.write_bytes(buf.getvalue())
    again = write_demo_parquet(directory, 200, SEED)
    assert again == path
    assert list(_read(again).columns) == ["sentinel"]


def test_write_demo_parquet_keys_files_by_rows_and_seed(store_root: StoragePath) -> None:
    a = write_demo_parquet(store_root, 200, 1)
    b = write_demo_parquet(store_root, 200, 2)
    c = write_demo_parquet(store_root, 300, 1)
    assert len({a, b, c}) == 3
    assert len(_read(c)) == 300
