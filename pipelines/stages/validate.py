"""Validate: check rows against the data contract; bad rows go to quarantine with a reason.

Nothing is dropped silently: every input row ends up in exactly one of the two outputs, and
the counts are checked to add up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.config import ColumnContract, SchemaConfig

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

__all__ = ["COLUMN_COLUMN", "QUARANTINE_COLUMNS", "REASON_COLUMN", "RULE_COLUMN", "ContractError",
           "ReasonCount", "ValidationResult", "check_batch", "check_threshold", "coerce_column",
           "key_partitions", "mark_duplicate_keys", "validate"]

logger = logging.getLogger(__name__)

REASON_COLUMN = "_quarantine_reason"
COLUMN_COLUMN = "_quarantine_column"
RULE_COLUMN = "_quarantine_rule"
QUARANTINE_COLUMNS = [REASON_COLUMN, COLUMN_COLUMN, RULE_COLUMN]
"""Added to every quarantined row: the message, the column at fault and the rule it broke
(``type``, ``nullable``, ``min``, ``max``, ``allowed``, ``regex``, ``unique_key``, ``target``)."""


class ContractError(ValueError):
    """The data as a whole breaks the contract (a missing column, too many bad rows)."""


@dataclass(frozen=True)
class ReasonCount:
    """How many rows broke one rule of one column."""

    column: str
    rule: str
    rows: int


@dataclass(frozen=True)
class ValidationResult:
    """Output of :func:`validate`: rows that passed, rows quarantined, and the counts."""

    valid: Dataset
    quarantined: Dataset
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    reasons: list[ReasonCount] = field(default_factory=list)
    """Quarantined rows per (column, rule), most frequent first."""
    checked: Dataset | None = None
    """Every input row as read, plus the quarantine columns (materialised): what the input
    looked like, without reading the source again."""

    @property
    def quarantined_fraction(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0


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


class _Reasons:
    """The first failure of each row: message, column and rule (later failures are not kept)."""

    def __init__(self, index: pd.Index) -> None:
        self.message = pd.Series(pd.NA, index=index, dtype="string")
        self.column = pd.Series(pd.NA, index=index, dtype="string")
        self.rule = pd.Series(pd.NA, index=index, dtype="string")

    def flag(self, mask: pd.Series, column: str, rule: str, text: str,
             values: pd.Series | None = None) -> None:
        new = mask.fillna(False).astype(bool) & self.message.isna()
        if not new.any():
            return
        # Messages are built for the failing rows only: most rows pass, and formatting
        # every value of every column would dominate the cost of the check.
        message = f"{column}: {text}"
        self.message[new] = (message + ": " + values[new].astype("string")) if values is not None \
            else message
        self.column[new] = column
        self.rule[new] = rule


def _row_reasons(df: pd.DataFrame, columns: dict[str, ColumnContract], target: str) -> _Reasons:
    out = _Reasons(df.index)
    if target in df.columns:
        out.flag(df[target].isna(), target, "target", "target is missing")
    for col, contract in columns.items():
        raw = df[col]
        values, bad = coerce_column(raw, contract.type)
        out.flag(bad, col, "type", f"not a valid {contract.type}", raw)
        if not contract.nullable:
            out.flag(raw.isna(), col, "nullable", "missing in a non-nullable column")
        if contract.min is not None:
            out.flag(values < contract.min, col, "min", f"below min {contract.min}", raw)
        if contract.max is not None:
            out.flag(values > contract.max, col, "max", f"above max {contract.max}", raw)
        if contract.allowed is not None:
            allowed = {a.strip().lower() for a in contract.allowed}
            norm = values.astype("string").str.strip().str.lower()
            out.flag(values.notna() & ~norm.isin(allowed), col, "allowed", "not an allowed value",
                     raw)
        if contract.regex is not None:
            text = values.astype("string")
            matches = text.str.fullmatch(contract.regex)
            out.flag(text.notna() & ~matches.fillna(False).astype(bool), col, "regex",
                     f"does not match regex '{contract.regex}'", raw)
    return out


def _missing_columns(present: set[str], schema: SchemaConfig, target: str) -> list[str]:
    wanted = dict.fromkeys([target, *schema.columns, *schema.unique_key])
    return [c for c in wanted if c not in present]


def check_batch(df: pd.DataFrame, schema: SchemaConfig, target: str) -> pd.DataFrame:
    """Return ``df`` with the quarantine columns: null where the row passes, else its first failure.

    Row rules only; the unique key spans blocks and is checked by :func:`mark_duplicate_keys`.
    """
    reasons = _reasons_frame(df, schema, target)
    out = df.copy()
    for name in QUARANTINE_COLUMNS:
        out[name] = reasons[name]
    return out


def _reasons_frame(df: pd.DataFrame, schema: SchemaConfig, target: str) -> pd.DataFrame:
    """The quarantine columns of ``df`` alone (``df`` is not copied)."""
    missing = _missing_columns(set(df.columns), schema, target)
    if missing:
        raise ContractError(f"input is missing contract column(s): {', '.join(missing)}")
    found = _row_reasons(df, schema.columns, target)
    return pd.DataFrame({REASON_COLUMN: found.message, COLUMN_COLUMN: found.column,
                         RULE_COLUMN: found.rule})


def key_partitions() -> int:
    """Hash partitions for the unique-key pass: one per CPU of the cluster.

    Ray Data's default of 200 costs seconds of fixed overhead per shuffle on a small cluster,
    and more partitions than CPUs do not run any faster.
    """
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def mark_duplicate_keys(block: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Quarantine the rows of ``block`` that repeat a key already taken by an earlier valid row.

    ``block`` holds every row of each key it contains (the caller hash-partitions on ``key``)
    and was checked by :func:`check_batch`. Rows that broke another rule keep their reason and
    take no key; rows with a missing key part are not checked, as in SQL.
    """
    candidates = block[REASON_COLUMN].isna() & block[key].notna().all(axis=1)
    if candidates.sum() < 2:
        return block
    repeat = pd.Series(False, index=block.index)
    repeat[candidates] = block.loc[candidates, key].duplicated(keep="first")
    if not repeat.any():
        return block
    out = block.copy()
    name = "+".join(key)
    parts = [f"{c}=" + block.loc[repeat, c].astype("string") for c in key]  # vectorised
    shown = parts[0]
    for part in parts[1:]:
        shown = shown + ", " + part
    out.loc[repeat, REASON_COLUMN] = f"{name}: duplicate unique key (" + shown + ")"
    out.loc[repeat, COLUMN_COLUMN] = name
    out.loc[repeat, RULE_COLUMN] = "unique_key"
    return out


def _with_reasons(table: pa.Table, reasons: pd.DataFrame) -> pa.Table:
    import pyarrow as pa

    for name in QUARANTINE_COLUMNS:
        values = pa.array(reasons[name].astype(object).where(reasons[name].notna(), None),
                          pa.string())
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, values)
        else:
            table = table.append_column(name, values)
    return table


def _annotate_block(table: pa.Table, schema: SchemaConfig, target: str) -> pa.Table:
    """:func:`check_batch` on an Arrow block, keeping the block's own columns untouched.

    The rules run on a pandas view, but the reasons are attached to the Arrow table itself,
    so a quarantined row is written with every input column exactly as it was read (a
    pandas round trip would turn an int column with gaps into floats, for one).
    """
    return _with_reasons(table, _reasons_frame(table.to_pandas(), schema, target))


def _mark_block(table: pa.Table, key: list[str]) -> pa.Table:
    """:func:`mark_duplicate_keys` on an Arrow block; only the key and reasons go to pandas."""
    marked = mark_duplicate_keys(table.select([*key, *QUARANTINE_COLUMNS]).to_pandas(), key)
    return _with_reasons(table, marked[QUARANTINE_COLUMNS])


def _failed_block(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.is_valid(table.column(REASON_COLUMN)))


def _passed(df: pd.DataFrame, schema: SchemaConfig) -> pd.DataFrame:
    ok = df[df[REASON_COLUMN].isna()].drop(columns=QUARANTINE_COLUMNS)
    for col, contract in schema.columns.items():
        values = coerce_column(ok[col], contract.type)[0]
        # Passed rows hold whole numbers only, so int columns can keep an integer type.
        ok[col] = values.astype("Int64") if contract.type == "int" else values
    return ok


def _reason_counts(df: pd.DataFrame) -> pd.DataFrame:
    counts = df.groupby([COLUMN_COLUMN, RULE_COLUMN], dropna=False).size()
    return counts.rename("rows").reset_index()


def _count_reasons(quarantined: Dataset) -> list[ReasonCount]:
    """Quarantined rows per (column, rule), most frequent first.

    Counted per block and summed here: the (column, rule) pairs are few, and a Ray group-by
    would spin up a hash shuffle (seconds of fixed cost) for a handful of numbers.
    """
    total: dict[tuple[str, str], int] = {}
    partial_counts = quarantined.map_batches(_reason_counts, batch_format="pandas", batch_size=None)
    for row in partial_counts.iter_rows():
        key = (str(row[COLUMN_COLUMN]), str(row[RULE_COLUMN]))
        total[key] = total.get(key, 0) + int(row["rows"])
    found = [ReasonCount(column, rule, rows) for (column, rule), rows in total.items()]
    return sorted(found, key=lambda r: (-r.rows, r.column, r.rule))


def check_threshold(result: ValidationResult, schema: SchemaConfig) -> None:
    """Raise :class:`ContractError` when more rows broke the contract than the schema allows.

    The message gives the share, the threshold and the most frequent reasons, so the user
    can tell a broken file from a contract that is too strict.
    """
    if result.rows_in == 0:
        raise ContractError("the input has no rows")
    share = result.quarantined_fraction
    if share <= schema.max_quarantine_fraction:
        return
    top = "; ".join(f"{r.column} [{r.rule}]: {r.rows} rows" for r in result.reasons[:5])
    raise ContractError(
        f"{result.rows_quarantined} of {result.rows_in} rows ({share:.1%}) broke the data "
        f"contract, more than schema.max_quarantine_fraction={schema.max_quarantine_fraction:.1%}. "
        f"Most frequent reasons: {top or 'none recorded'}. The quarantined rows keep every "
        f"input column plus {REASON_COLUMN}; fix the data, or loosen the contract or the threshold."
    )


def validate(ds: Dataset, schema: SchemaConfig, target: str, enforce: bool = True) -> ValidationResult:
    """Split ``ds`` into rows that meet the contract and rows to quarantine.

    Row rules run block by block; the unique key (when set) is checked in one hash-partitioned
    pass over the groups of equal keys, so no node ever holds the set of all keys. With
    ``enforce=False`` the quarantine threshold is left to :func:`check_threshold`, so the
    caller can write the quarantine and report first.

    Raises:
        ContractError: a contract column is missing, or (with ``enforce``) more than
            ``schema.max_quarantine_fraction`` of the rows fail.
    """
    missing = _missing_columns(set(ds.columns() or []), schema, target)
    if missing:
        if ds.count() == 0:  # an empty file has no columns either: say what is wrong with it
            raise ContractError("the input has no rows")
        raise ContractError(f"input is missing contract column(s): {', '.join(missing)}")
    annotated = ds.map_batches(
        partial(_annotate_block, schema=schema, target=target), batch_format="pyarrow"
    )
    if schema.unique_key:
        # Hash-partition on the key: each partition is one block holding every row of its
        # keys (the property Ray's own map_groups relies on), so a vectorised pass per block
        # finds all repeats, with no per-group Python call and no central set of keys.
        annotated = annotated.repartition(
            key_partitions(), keys=list(schema.unique_key)
        ).map_batches(partial(_mark_block, key=list(schema.unique_key)),
                      batch_format="pyarrow", batch_size=None)
    annotated = annotated.materialize()
    valid = annotated.map_batches(partial(_passed, schema=schema), batch_format="pandas").materialize()
    quarantined = annotated.map_batches(_failed_block, batch_format="pyarrow").materialize()
    # With a unique key the rows went through a shuffle, so they are counted at the source too.
    rows_in = ds.count() if schema.unique_key else annotated.count()
    rows_valid, rows_bad = valid.count(), quarantined.count()
    if rows_in != rows_valid + rows_bad:  # an invariant, checked because losing rows is silent
        raise RuntimeError(f"validation lost rows: {rows_in} in, {rows_valid}+{rows_bad} out")
    logger.info("validation: %d rows in, %d passed, %d quarantined", rows_in, rows_valid, rows_bad)
    reasons = _count_reasons(quarantined) if rows_bad else []
    result = ValidationResult(valid, quarantined, rows_in, rows_valid, rows_bad, reasons,
                              checked=annotated)
    if enforce:
        check_threshold(result, schema)
    return result
