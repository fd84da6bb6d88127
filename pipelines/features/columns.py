"""Raw input columns, read the same way from a pandas frame or an Arrow table.

The fitted feature pipeline computes every feature from three kinds of raw column: floats
(NumPy, NaN for missing), strings and timestamps (Arrow arrays, null for missing). A source
hands them out from either batch format, so the one transform kernel serves Ray Data's Arrow
batches (no pandas round trip) and pandas frames (MLflow pyfunc, Serve) alike. Values Arrow
cannot read natively — numbers written as text, dates in mixed formats — take the pandas
parsing path in both sources, so both give the same values.

Imported by the MLflow model at load time: no Ray import.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ArrowColumns", "ColumnSource", "PandasColumns", "to_float"]


class ColumnSource(Protocol):
    """Raw columns of one batch, by kind."""

    n: int

    def has(self, name: str) -> bool: ...

    def floats(self, name: str) -> np.ndarray:
        """float64 values, NaN for missing or unparseable; never a view the caller may change."""
        ...

    def strings(self, name: str) -> pa.Array | pa.ChunkedArray:
        """Text values (null for missing)."""
        ...

    def datetimes(self, name: str) -> pa.Array | pa.ChunkedArray:
        """Timestamps (null for missing or unparseable)."""
        ...


def to_float(s: pd.Series) -> pd.Series:
    """A pandas column as float64: bools as 0/1, text parsed, anything else missing."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _strings_from_pandas(s: pd.Series) -> pa.Array:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return _numbers_as_text(s.astype("float64"))
    if s.dtype == object:
        # Mixed Python values (MLflow / Serve inputs): numbers get the numeric spelling too.
        numbers = s.map(lambda v: isinstance(v, int | float | np.number)
                        and not isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
        if numbers.any():
            text = s.astype("string").to_numpy(dtype=object, na_value=None)
            spelled = _numbers_as_text(pd.Series(s[numbers], dtype="float64"))
            text[numbers] = spelled.to_numpy(zero_copy_only=False)
            return pa.array(text, type=pa.string())
    return pa.array(s.astype("string"), type=pa.string())


def _numbers_as_text(v: pd.Series) -> pa.Array:
    """Numbers as category text, one spelling whatever the storage: 2, 2.0 and int 2 are "2".

    An integer column with a missing value reaches pandas as float (2.0); without this, the
    same code would be a different category in batches with and without missing values.
    """
    values = v.to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        whole = present & (np.mod(values, 1) == 0) & (np.abs(values) < 2**53)
    text = values.astype(str).astype(object)
    text[whole] = values[whole].astype(np.int64).astype(str)
    text[~present] = None
    return pa.array(text, type=pa.string())


def _datetimes_from_pandas(s: pd.Series) -> pa.Array:
    return pa.array(pd.to_datetime(s, errors="coerce", format="mixed"))


class PandasColumns:
    """Columns of a pandas frame."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.n = len(df)

    def has(self, name: str) -> bool:
        return name in self.df.columns

    def floats(self, name: str) -> np.ndarray:
        return to_float(self.df[name]).to_numpy(dtype=np.float64, copy=True)

    def strings(self, name: str) -> pa.Array:
        return _strings_from_pandas(self.df[name])

    def datetimes(self, name: str) -> pa.Array:
        return _datetimes_from_pandas(self.df[name])


class ArrowColumns:
    """Columns of an Arrow table (Ray Data's ``pyarrow`` batches), converted without pandas
    wherever Arrow has the type natively."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.n = table.num_rows

    def has(self, name: str) -> bool:
        return name in self.table.column_names

    def _column(self, name: str) -> pa.ChunkedArray:
        col = self.table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        return col

    def floats(self, name: str) -> np.ndarray:
        col = self._column(name)
        t = col.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
                or pa.types.is_null(t):
            # Nulls become NaN once the column is float64.
            values = pc.cast(col, pa.float64()).to_numpy()
            return np.array(values, dtype=np.float64, copy=True)
        return to_float(col.to_pandas()).to_numpy(dtype=np.float64, copy=True)

    def strings(self, name: str) -> pa.Array | pa.ChunkedArray:
        col = self._column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            return col
        # Numbers and others: the same spelling as the pandas source gives.
        return _strings_from_pandas(col.to_pandas())

    def datetimes(self, name: str) -> pa.Array | pa.ChunkedArray:
        col = self._column(name)
        if pa.types.is_timestamp(col.type):
            return col
        if pa.types.is_date(col.type):
            return pc.cast(col, pa.timestamp("s"))
        return _datetimes_from_pandas(col.to_pandas())


def as_source(batch: Any) -> ColumnSource:
    """A column source for a pandas frame or an Arrow table."""
    if isinstance(batch, pa.Table):
        return ArrowColumns(batch)
    return PandasColumns(batch)
