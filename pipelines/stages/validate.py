"""Validate: check rows against the data contract; bad rows go to quarantine with a reason.

Nothing is dropped silently: every input row ends up in exactly one of the two outputs, and
the counts are checked to add up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.config import ColumnContract, SchemaConfig
from pipelines.errors import RaypipeError

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

__all__ = ["COLUMN_COLUMN", "QUARANTINE_COLUMNS", "REASON_COLUMN", "RULE_COLUMN", "ContractError",
           "ReasonCount", "ValidationResult", "check_batch", "check_threshold", "coerce_column",
           "key_partitions", "mark_duplicate_keys", "passed_rows", "validate"]

logger = logging.getLogger(__name__)

REASON_COLUMN = "_quarantine_reason"
COLUMN_COLUMN = "_quarantine_column"
RULE_COLUMN = "_quarantine_rule"
QUARANTINE_COLUMNS = [REASON_COLUMN, COLUMN_COLUMN, RULE_COLUMN]
"""Added to every quarantined row: the message, the column at fault and the rule it broke
(``type``, ``nullable``, ``min``, ``max``, ``allowed``, ``regex``, ``unique_key``, ``target``)."""


class ContractError(RaypipeError, ValueError):
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
            # an infinity is no whole number, and the passed rows' int64 could not hold it
            frac = out.notna() & ((np.floor(out) != out) | np.isinf(out))
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


_TEXT_MISSING = "missing in a non-nullable column"


def _allowed_set(contract: ColumnContract) -> set[str]:
    return {a.strip().lower() for a in contract.allowed or []}


def _regex_text(contract: ColumnContract) -> str:
    return f"does not match regex '{contract.regex}'"


def _pandas_rules(raw: pd.Series, contract: ColumnContract
                  ) -> Iterator[tuple[pd.Series, str, str, bool]]:
    """The rules of one column in order: (failing mask, rule, message, message shows the value).

    The reference implementation: :func:`check_batch` runs it on pandas frames, and the Arrow
    kernel falls back to it for a column whose values must be parsed (text in a numeric
    column, say).
    """
    values, bad = coerce_column(raw, contract.type)
    yield bad, "type", f"not a valid {contract.type}", True
    if not contract.nullable:
        yield raw.isna(), "nullable", _TEXT_MISSING, False
    if contract.min is not None:
        yield values < contract.min, "min", f"below min {contract.min}", True
    if contract.max is not None:
        yield values > contract.max, "max", f"above max {contract.max}", True
    if contract.allowed is not None:
        norm = values.astype("string").str.strip().str.lower()
        yield values.notna() & ~norm.isin(_allowed_set(contract)), "allowed", \
            "not an allowed value", True
    if contract.regex is not None:
        text = values.astype("string")
        matches = text.str.fullmatch(contract.regex)
        yield text.notna() & ~matches.fillna(False).astype(bool), "regex", _regex_text(contract), \
            True


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
        for mask, rule, text, shows_value in _pandas_rules(raw, contract):
            out.flag(mask, col, rule, text, raw if shows_value else None)
    return out


# --------------------------------------------------------------------------- Arrow kernel
#
# The same rules on an Arrow block without converting it to pandas. A rule runs on the
# column's Arrow data when its type already is the contract's (the common case for Parquet);
# only a column whose values must be parsed goes to pandas, alone. Each rule mirrors
# _pandas_rules, which the unit tests hold it to, failing row for failing row.

Shown = Callable[[np.ndarray], pd.Series]
"""Given the positions of failing rows, their values as the message shows them."""


def _mask(result: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean kernel result as a NumPy mask; null (an unknown comparison) is not a failure."""
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(result, False).to_numpy(zero_copy_only=False), dtype=bool)


def _shown_arrow(arr: pa.ChunkedArray) -> Shown:
    """Values formatted as the pandas path formats them: via the column's pandas dtype, so an
    int column with gaps shows ``-1.0`` (pandas holds it as floats), one without shows ``-1``."""
    import pyarrow as pa

    def shown(idx: np.ndarray) -> pd.Series:
        picked = arr.take(pa.array(idx))
        if pa.types.is_integer(arr.type) and arr.null_count:
            picked = picked.cast(pa.float64())
        return picked.to_pandas().astype("string")

    return shown


def _shown_pandas(raw: pd.Series, idx: np.ndarray) -> pd.Series:
    return raw.iloc[idx].astype("string")


def _is_text(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _native(t: pa.DataType, kind: str) -> bool:
    """Whether a column of Arrow type ``t`` holds ``kind`` values as they are (nothing to parse)."""
    import pyarrow as pa

    if kind in ("int", "float"):
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t))
    if kind == "bool":
        return bool(pa.types.is_boolean(t))
    if kind == "datetime":
        return bool(pa.types.is_timestamp(t))
    return _is_text(t)


def _arrow_rules(arr: pa.ChunkedArray, contract: ColumnContract
                 ) -> Iterator[tuple[np.ndarray, str, str, bool]]:
    """:func:`_pandas_rules` for a column whose Arrow type is native to its contract type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t, kind = arr.type, contract.type
    numbers = None
    if kind in ("int", "float"):
        # pandas compares in float64, and so do we (int64 beyond 2**53 rounds alike)
        numbers = arr if pa.types.is_float64(t) else pc.cast(arr, pa.float64())
        if kind == "int" and pa.types.is_floating(t):
            whole = pc.and_(pc.equal(pc.floor(numbers), numbers), pc.is_finite(numbers))
            yield _mask(pc.and_(pc.invert(pc.is_nan(numbers)), pc.invert(whole))), "type", \
                "not a valid int", True
    # nothing to parse otherwise: a native column has no type failures
    if not contract.nullable:
        yield _mask(pc.is_null(arr, nan_is_null=True)), "nullable", _TEXT_MISSING, False
    if numbers is not None:
        if contract.min is not None:
            yield _mask(pc.less(numbers, contract.min)), "min", f"below min {contract.min}", True
        if contract.max is not None:
            yield _mask(pc.greater(numbers, contract.max)), "max", f"above max {contract.max}", \
                True
    if contract.allowed is not None:
        # pandas' string methods on Arrow-backed strings are these very kernels
        norm = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        allowed = pa.array(sorted(_allowed_set(contract)), norm.type)
        yield _mask(pc.and_(pc.is_valid(arr), pc.invert(pc.is_in(norm, value_set=allowed)))), \
            "allowed", "not an allowed value", True
    if contract.regex is not None:
        # pandas decides per pattern (and data) whether RE2 gives Python's answer or Python's
        # re must run; its accessor on the Arrow data, without copying the strings out,
        # keeps that decision and the pandas path's result.
        text = pd.Series(pd.arrays.ArrowStringArray(pc.cast(arr, pa.large_string())))
        matches = text.str.fullmatch(contract.regex).fillna(False).to_numpy(dtype=bool)
        yield np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool) & ~matches, \
            "regex", _regex_text(contract), True


class _ArrowReasons:
    """The first failure of each row of an Arrow block, kept as row positions per rule."""

    def __init__(self, rows: int) -> None:
        self.failed = np.zeros(rows, dtype=bool)
        self.groups: list[tuple[np.ndarray, str, str, list[str]]] = []

    def flag(self, mask: np.ndarray, column: str, rule: str, text: str,
             shown: Shown | None) -> None:
        new = mask & ~self.failed
        idx = np.flatnonzero(new)
        if not len(idx):
            return
        self.failed[idx] = True
        message = f"{column}: {text}"
        messages = (message + ": " + shown(idx)).tolist() if shown is not None \
            else [message] * len(idx)
        self.groups.append((idx, column, rule, messages))

    def arrays(self) -> list[pa.Array]:
        """The three quarantine columns: null where the row passed."""
        import pyarrow as pa

        rows = len(self.failed)
        if not self.groups:
            return [pa.nulls(rows, pa.string()) for _ in QUARANTINE_COLUMNS]
        # Gather by position: each failing row points at its message and at its group's
        # column and rule; the passing rows point nowhere and come out null.
        at_message = np.full(rows, -1, dtype=np.int64)
        at_group = np.full(rows, -1, dtype=np.int64)
        start = 0
        for g, (idx, _, _, messages) in enumerate(self.groups):
            at_message[idx] = np.arange(start, start + len(messages))
            at_group[idx] = g
            start += len(messages)
        passed = ~self.failed
        messages = pa.array([m for group in self.groups for m in group[3]], pa.string())
        columns = pa.array([g[1] for g in self.groups], pa.string())
        rules = pa.array([g[2] for g in self.groups], pa.string())
        return [messages.take(pa.array(at_message, mask=passed)),
                columns.take(pa.array(at_group, mask=passed)),
                rules.take(pa.array(at_group, mask=passed))]


def _arrow_reasons(table: pa.Table, schema: SchemaConfig, target: str) -> list[pa.Array]:
    """:func:`_reasons_frame` on an Arrow block: the three quarantine columns, as Arrow."""
    import pyarrow.compute as pc

    missing = _missing_columns(set(table.column_names), schema, target)
    if missing:
        raise ContractError(f"input is missing contract column(s): {', '.join(missing)}")
    out = _ArrowReasons(table.num_rows)
    if target in table.column_names:
        out.flag(_mask(pc.is_null(table.column(target), nan_is_null=True)), target, "target",
                 "target is missing", None)
    for col, contract in schema.columns.items():
        arr = table.column(col)
        if _native(arr.type, contract.type):
            shown = _shown_arrow(arr)
            for mask, rule, text, shows_value in _arrow_rules(arr, contract):
                out.flag(mask, col, rule, text, shown if shows_value else None)
            continue
        raw = arr.to_pandas()  # this column only: its values must be parsed
        shown_raw = partial(_shown_pandas, raw)
        for pmask, rule, text, shows_value in _pandas_rules(raw, contract):
            out.flag(pmask.fillna(False).to_numpy(dtype=bool), col, rule, text,
                     shown_raw if shows_value else None)
    return out.arrays()


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


def _with_columns(table: pa.Table, arrays: list[pa.Array]) -> pa.Table:
    """``table`` with the quarantine columns set to ``arrays`` (replaced where present)."""
    for name, values in zip(QUARANTINE_COLUMNS, arrays, strict=True):
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, values)
        else:
            table = table.append_column(name, values)
    return table


def _with_reasons(table: pa.Table, reasons: pd.DataFrame) -> pa.Table:
    import pyarrow as pa

    return _with_columns(table, [pa.array(reasons[name].astype(object)
                                          .where(reasons[name].notna(), None), pa.string())
                                 for name in QUARANTINE_COLUMNS])


def _annotate_block(table: pa.Table, schema: SchemaConfig, target: str) -> pa.Table:
    """:func:`check_batch` on an Arrow block, keeping the block's own columns untouched.

    The rules run on the Arrow columns (a column goes to pandas only when its values must be
    parsed), and the reasons are attached to the Arrow table itself, so a quarantined row is
    written with every input column exactly as it was read.
    """
    return _with_columns(table, _arrow_reasons(table, schema, target))


def _mark_block(table: pa.Table, key: list[str]) -> pa.Table:
    """:func:`mark_duplicate_keys` on an Arrow block; only the key and reasons go to pandas."""
    marked = mark_duplicate_keys(table.select([*key, *QUARANTINE_COLUMNS]).to_pandas(), key)
    return _with_reasons(table, marked[QUARANTINE_COLUMNS])


def _failed_block(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.is_valid(table.column(REASON_COLUMN)))


def _typed(arr: pa.ChunkedArray, kind: str) -> pa.ChunkedArray | pa.Array:
    """A passed column in its contract type: int64, float64, bool, a timestamp or text.

    Passed rows hold whole numbers only, so an int column keeps an integer type even when it
    was read as floats or text. Native columns are cast by Arrow; a column whose values had to
    be parsed is parsed again here, on the passed rows only, exactly as the check parsed it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if _native(t, kind):
        if kind == "int":
            if pa.types.is_floating(t):  # NaN is pandas' missing value: a gap, not a number
                arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, t), arr)
            return arr if pa.types.is_int64(t) else pc.cast(arr, pa.int64())
        if kind == "float":
            return arr if pa.types.is_float64(t) else pc.cast(arr, pa.float64())
        return arr
    values = coerce_column(arr.to_pandas(), kind)[0]
    if kind == "int":
        return pa.array(values.astype("Int64"), pa.int64())
    if kind == "string":
        return pa.array(values, pa.string())
    return pa.array(values, from_pandas=True, type=pa.float64() if kind == "float" else None)


def passed_rows(table: pa.Table, schema: SchemaConfig) -> pa.Table:
    """The rows of an annotated block (one of :attr:`ValidationResult.checked`) that passed,
    without the quarantine columns, contract columns in their contract types; the other
    columns stay as read. :attr:`ValidationResult.valid` is this, block by block."""
    import pyarrow.compute as pc

    ok = table.filter(pc.is_null(table.column(REASON_COLUMN))).drop_columns(QUARANTINE_COLUMNS)
    for col, contract in schema.columns.items():
        i = ok.column_names.index(col)
        ok = ok.set_column(i, col, _typed(ok.column(col), contract.type))
    return ok


def _reason_counts(table: pa.Table) -> pa.Table:
    return table.select([COLUMN_COLUMN, RULE_COLUMN]).group_by(
        [COLUMN_COLUMN, RULE_COLUMN], use_threads=False).aggregate([([], "count_all")])


def _count_reasons(quarantined: Dataset) -> list[ReasonCount]:
    """Quarantined rows per (column, rule), most frequent first.

    Counted per block and summed here: the (column, rule) pairs are few, and a Ray group-by
    would spin up a hash shuffle (seconds of fixed cost) for a handful of numbers.
    """
    total: dict[tuple[str, str], int] = {}
    partial_counts = quarantined.map_batches(_reason_counts, batch_format="pyarrow",
                                             batch_size=None, zero_copy_batch=True)
    for row in partial_counts.iter_rows():
        key = (str(row[COLUMN_COLUMN]), str(row[RULE_COLUMN]))
        total[key] = total.get(key, 0) + int(row["count_all"])
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
    annotated = ds.map_batches(partial(_annotate_block, schema=schema, target=target),
                               batch_format="pyarrow", zero_copy_batch=True)
    if schema.unique_key:
        # Hash-partition on the key: each partition is one block holding every row of its
        # keys (the property Ray's own map_groups relies on), so a vectorised pass per block
        # finds all repeats, with no per-group Python call and no central set of keys.
        annotated = annotated.repartition(
            key_partitions(), keys=list(schema.unique_key)
        ).map_batches(partial(_mark_block, key=list(schema.unique_key)),
                      batch_format="pyarrow", batch_size=None)
    # The checked rows are kept (the caller profiles them); both outputs are filters of them,
    # materialised so that their row counts are exact and free, and so that each consumer of
    # an output reads it from the object store instead of checking the input again.
    annotated = annotated.materialize()
    valid = annotated.map_batches(partial(passed_rows, schema=schema), batch_format="pyarrow",
                                  zero_copy_batch=True).materialize()
    quarantined = annotated.map_batches(_failed_block, batch_format="pyarrow",
                                        zero_copy_batch=True).materialize()
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
