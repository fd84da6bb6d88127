"""Validate: check rows against the data contract; bad rows go to quarantine with a reason.

Nothing is dropped silently: every input row ends up in exactly one of the two outputs, and
the counts are checked to add up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.config import ColumnContract, SchemaConfig

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["REASON_COLUMN", "ContractError", "ValidationResult", "check_batch", "coerce_column",
           "validate"]

logger = logging.getLogger(__name__)

REASON_COLUMN = "_quarantine_reason"


class ContractError(ValueError):
    """The data as a whole breaks the contract (a missing column, too many bad rows)."""


@dataclass(frozen=True)
class ValidationResult:
    """Output of :func:`validate`: rows that passed, rows quarantined, and the counts."""

    valid: Dataset
    quarantined: Dataset
    rows_in: int
    rows_valid: int
    rows_quarantined: int


def coerce_column(s: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """Convert ``s`` to the contract type; return the values and a mask of unparseable ones."""
    if kind in ("int", "float"):
        if pd.api.types.is_bool_dtype(s):
            out = s.astype("float64")
        else:
            out = pd.to_numeric(s, errors="coerce").astype("float64")
        bad = s.notna() & out.isna()
        if kind == "int":
            frac = out.notna() & (np.floor(out) != out)
            bad = bad | frac
        return out, bad
    if kind == "bool":
        if pd.api.types.is_bool_dtype(s):
            return s.astype("boolean"), pd.Series(False, index=s.index)
        text = s.astype("string").str.strip().str.lower()
        mapping = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False,
                   "1.0": True, "0.0": False}
        out = text.map(mapping).astype("boolean")
        return out, s.notna() & out.isna()
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(s):
            return s, pd.Series(False, index=s.index)
        out = pd.to_datetime(s, errors="coerce", format="mixed")
        return out, s.notna() & out.isna()
    # string
    out = s.astype("string")
    return out, pd.Series(False, index=s.index)


def _row_reasons(df: pd.DataFrame, columns: dict[str, ColumnContract], target: str) -> pd.Series:
    reasons = pd.Series(pd.NA, index=df.index, dtype="string")

    def flag(mask: pd.Series, message: pd.Series | str) -> None:
        new = mask.fillna(False).astype(bool) & reasons.isna()
        if new.any():
            reasons[new] = message[new] if isinstance(message, pd.Series) else message

    if target in df.columns:
        flag(df[target].isna(), f"{target}: target is missing")
    for col, contract in columns.items():
        raw = df[col]
        values, bad = coerce_column(raw, contract.type)
        shown = raw.astype("string")
        flag(bad, f"{col}: not a valid {contract.type}: " + shown)
        if not contract.nullable:
            flag(raw.isna(), f"{col}: missing in a non-nullable column")
        if contract.min is not None:
            flag(values < contract.min, f"{col}: below min {contract.min}: " + shown)
        if contract.max is not None:
            flag(values > contract.max, f"{col}: above max {contract.max}: " + shown)
        if contract.allowed is not None:
            allowed = {a.strip().lower() for a in contract.allowed}
            norm = values.astype("string").str.strip().str.lower()
            flag(values.notna() & ~norm.isin(allowed), f"{col}: not an allowed value: " + shown)
    return reasons


def check_batch(df: pd.DataFrame, schema: SchemaConfig, target: str) -> pd.DataFrame:
    """Return ``df`` with a reason column: null where the row passes, else the first failure."""
    missing = [c for c in [target, *schema.columns] if c not in df.columns]
    if missing:
        raise ContractError(f"input is missing contract column(s): {', '.join(missing)}")
    out = df.copy()
    out[REASON_COLUMN] = _row_reasons(df, schema.columns, target)
    return out


def _passed(df: pd.DataFrame, schema: SchemaConfig) -> pd.DataFrame:
    ok = df[df[REASON_COLUMN].isna()].drop(columns=[REASON_COLUMN])
    for col, contract in schema.columns.items():
        values = coerce_column(ok[col], contract.type)[0]
        # Passed rows hold whole numbers only, so int columns can keep an integer type.
        ok[col] = values.astype("Int64") if contract.type == "int" else values
    return ok


def _failed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df[REASON_COLUMN].notna()]


def validate(ds: Dataset, schema: SchemaConfig, target: str) -> ValidationResult:
    """Split ``ds`` into rows that meet the contract and rows to quarantine.

    Raises:
        ContractError: a contract column is missing, or more than
            ``schema.max_quarantine_fraction`` of the rows fail.
    """
    present = set(ds.columns() or [])
    missing = [c for c in [target, *schema.columns] if c not in present]
    if missing:
        raise ContractError(f"input is missing contract column(s): {', '.join(missing)}")
    annotated = ds.map_batches(
        partial(check_batch, schema=schema, target=target), batch_format="pandas"
    ).materialize()
    valid = annotated.map_batches(partial(_passed, schema=schema), batch_format="pandas").materialize()
    quarantined = annotated.map_batches(_failed, batch_format="pandas").materialize()
    rows_in, rows_valid, rows_bad = annotated.count(), valid.count(), quarantined.count()
    if rows_in != rows_valid + rows_bad:  # an invariant, checked because losing rows is silent
        raise RuntimeError(f"validation lost rows: {rows_in} in, {rows_valid}+{rows_bad} out")
    logger.info("validation: %d rows in, %d passed, %d quarantined", rows_in, rows_valid, rows_bad)
    if rows_in == 0:
        raise ContractError("the input has no rows")
    share = rows_bad / rows_in
    if share > schema.max_quarantine_fraction:
        raise ContractError(
            f"{rows_bad} of {rows_in} rows ({share:.1%}) broke the data contract, more than "
            f"schema.max_quarantine_fraction={schema.max_quarantine_fraction:.1%}; "
            "see the quarantine output for the reasons"
        )
    return ValidationResult(valid, quarantined, rows_in, rows_valid, rows_bad)
