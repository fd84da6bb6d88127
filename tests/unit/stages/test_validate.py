"""Unit tests for the pure parts of pipelines.stages.validate: coerce_column and check_batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.config import ColumnContract, SchemaConfig
from pipelines.stages.validate import (
    COLUMN_COLUMN,
    QUARANTINE_COLUMNS,
    REASON_COLUMN,
    RULE_COLUMN,
    ContractError,
    ReasonCount,
    ValidationResult,
    check_batch,
    check_threshold,
    coerce_column,
    mark_duplicate_keys,
)

# --------------------------------------------------------------------------- coerce_column


def test_coerce_float_flags_unparseable() -> None:
    s = pd.Series(["1.5", "2", "abc", None, "1e3"], dtype=object)
    values, bad = coerce_column(s, "float")
    assert values.dtype == "float64"
    assert values.iloc[0] == 1.5
    assert values.iloc[1] == 2.0
    assert values.iloc[4] == 1000.0
    assert np.isnan(values.iloc[2]) and np.isnan(values.iloc[3])
    assert bad.tolist() == [False, False, True, False, False]


def test_coerce_int_flags_fractions_and_text() -> None:
    s = pd.Series(["3", "2.5", "x", None, "4.0"], dtype=object)
    values, bad = coerce_column(s, "int")
    assert values.dtype == "float64"
    assert values.iloc[0] == 3.0
    assert values.iloc[4] == 4.0
    assert bad.tolist() == [False, True, True, False, False]


def test_coerce_numeric_from_numeric_and_bool_dtypes() -> None:
    values, bad = coerce_column(pd.Series([1, 2, 3]), "int")
    assert values.tolist() == [1.0, 2.0, 3.0]
    assert not bad.any()
    values, bad = coerce_column(pd.Series([True, False]), "float")
    assert values.tolist() == [1.0, 0.0]
    assert not bad.any()
    values, bad = coerce_column(pd.Series([1.0, np.nan]), "float")
    assert not bad.any()


def test_coerce_bool_spellings() -> None:
    s = pd.Series(["true", " YES ", "0", "no", "False", "1.0", "maybe", None], dtype=object)
    values, bad = coerce_column(s, "bool")
    assert str(values.dtype) == "boolean"
    assert values.iloc[:6].tolist() == [True, True, False, False, False, True]
    assert values.iloc[6:].isna().all()
    assert bad.tolist() == [False] * 6 + [True, False]


def test_coerce_bool_from_bool_and_numeric_dtypes() -> None:
    values, bad = coerce_column(pd.Series([True, False]), "bool")
    assert values.tolist() == [True, False]
    assert not bad.any()
    values, bad = coerce_column(pd.Series([1, 0, 2]), "bool")
    assert values.iloc[:2].tolist() == [True, False]
    assert bad.tolist() == [False, False, True]


def test_coerce_datetime_flags_unparseable() -> None:
    s = pd.Series(["2024-01-02", "2024-02-03 10:30:00", "not a date", None], dtype=object)
    values, bad = coerce_column(s, "datetime")
    assert pd.api.types.is_datetime64_any_dtype(values)
    assert values.iloc[0] == pd.Timestamp("2024-01-02")
    assert values.iloc[1] == pd.Timestamp("2024-02-03 10:30")
    assert pd.isna(values.iloc[2]) and pd.isna(values.iloc[3])
    assert bad.tolist() == [False, False, True, False]


def test_coerce_datetime_passes_datetime_dtype_through() -> None:
    s = pd.Series(pd.to_datetime(["2024-01-01", None]))
    values, bad = coerce_column(s, "datetime")
    pd.testing.assert_series_equal(values, s)
    assert not bad.any()


def test_coerce_string_never_flags() -> None:
    s = pd.Series(["a", 1, None, 2.5], dtype=object)
    values, bad = coerce_column(s, "string")
    assert pd.api.types.is_string_dtype(values)
    assert values.iloc[0] == "a"
    assert values.iloc[1] == "1"
    assert pd.isna(values.iloc[2])
    assert not bad.any()


@pytest.mark.parametrize("kind", ["int", "float", "bool", "datetime", "string"])
def test_coerce_keeps_index(kind: str) -> None:
    s = pd.Series(["1", None], index=[10, 20], dtype=object)
    values, bad = coerce_column(s, kind)
    assert values.index.tolist() == [10, 20]
    assert bad.index.tolist() == [10, 20]
    assert bad.dtype == bool


# --------------------------------------------------------------------------- check_batch


SCHEMA = SchemaConfig(
    columns={
        "tenure": ColumnContract(type="float", min=0, max=100),
        "plan": ColumnContract(type="string", allowed=["basic", "Premium "]),
        "age": ColumnContract(type="int", nullable=False),
    }
)


def frame(rows: list[dict[str, Any]], index: list[int] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows, index=index)
    for col in ["tenure", "plan", "age", "y"]:
        if col not in df:
            df[col] = None
    return df


def good_row(**changes: Any) -> dict[str, Any]:
    return {"tenure": 10.0, "plan": "basic", "age": 30, "y": 1, **changes}


def reasons(rows: list[dict[str, Any]], schema: SchemaConfig = SCHEMA) -> list[Any]:
    out = check_batch(frame(rows), schema, "y")
    return [None if pd.isna(r) else r for r in out[REASON_COLUMN]]


def test_good_rows_pass() -> None:
    assert reasons([good_row(), good_row(tenure=0.0), good_row(tenure=100.0)]) == [None] * 3


def test_output_keeps_rows_index_and_columns() -> None:
    df = frame([good_row(), good_row(tenure=-5.0)], index=[7, 3])
    out = check_batch(df, SCHEMA, "y")
    assert out.index.tolist() == [7, 3]
    assert list(out.columns) == [*df.columns, *QUARANTINE_COLUMNS]
    assert REASON_COLUMN not in df.columns  # the input is not modified
    pd.testing.assert_frame_equal(out.drop(columns=QUARANTINE_COLUMNS), df)


def test_null_target_is_flagged() -> None:
    [r] = reasons([good_row(y=None)])
    assert r == "y: target is missing"


def test_below_min_is_flagged_with_column_and_value() -> None:
    [r] = reasons([good_row(tenure=-1.0)])
    assert r.startswith("tenure: below min 0")
    assert "-1.0" in r


def test_above_max_is_flagged_with_column_and_value() -> None:
    [r] = reasons([good_row(tenure=250.5)])
    assert r.startswith("tenure: above max 100")
    assert "250.5" in r


def test_not_allowed_is_flagged_with_column_and_value() -> None:
    [r] = reasons([good_row(plan="gold")])
    assert r == "plan: not an allowed value: gold"


@pytest.mark.parametrize("plan", [" Basic", "BASIC", "basic  ", "premium", " PREMIUM "])
def test_allowed_is_compared_after_strip_and_lower(plan: str) -> None:
    assert reasons([good_row(plan=plan)]) == [None]


def test_nullable_column_may_be_missing() -> None:
    assert reasons([good_row(plan=None, tenure=None)]) == [None]


def test_non_nullable_missing_is_flagged() -> None:
    [r] = reasons([good_row(age=None)])
    assert r == "age: missing in a non-nullable column"


def test_unparseable_value_is_flagged_with_column_and_value() -> None:
    [r1, r2] = reasons([good_row(age="thirty"), good_row(age=30.5)])
    assert r1 == "age: not a valid int: thirty"
    assert r2.startswith("age: not a valid int: 30.5")


def test_first_reason_wins() -> None:
    rows = [
        good_row(y=None, tenure=-1.0, plan="gold"),  # target is checked first
        good_row(tenure=-1.0, plan="gold"),  # then contract columns in schema order
        good_row(plan="gold", age=None),
        good_row(age="x"),  # unparseable comes before nullability / bounds of that column
    ]
    assert reasons(rows) == [
        "y: target is missing",
        "tenure: below min 0.0: -1.0",
        "plan: not an allowed value: gold",
        "age: not a valid int: x",
    ]


def test_each_row_gets_its_own_reason() -> None:
    rows = [good_row(), good_row(tenure=-3.0), good_row(), good_row(plan="x"), good_row(y=None)]
    out = reasons(rows)
    assert out[0] is None and out[2] is None
    assert out[1].startswith("tenure:") and "-3.0" in out[1]
    assert out[3].startswith("plan:") and out[3].endswith(": x")
    assert out[4].startswith("y:")


def test_columns_outside_the_contract_are_unchecked() -> None:
    df = frame([good_row(extra="anything")])
    out = check_batch(df, SCHEMA, "y")
    assert out[REASON_COLUMN].isna().all()
    assert out["extra"].tolist() == ["anything"]


def test_string_numbers_are_checked_against_bounds() -> None:
    [ok, low] = reasons([good_row(tenure="50"), good_row(tenure="-2")])
    assert ok is None
    assert low is not None and low.startswith("tenure: below min") and "-2" in low


def test_missing_contract_column_raises_naming_it() -> None:
    df = frame([good_row()]).drop(columns=["plan"])
    with pytest.raises(ContractError, match="plan"):
        check_batch(df, SCHEMA, "y")


def test_missing_target_raises_naming_it() -> None:
    df = frame([good_row()]).drop(columns=["y", "age"])
    with pytest.raises(ContractError) as info:
        check_batch(df, SCHEMA, "y")
    assert "y" in str(info.value)
    assert "age" in str(info.value)


def test_empty_schema_only_checks_target() -> None:
    df = pd.DataFrame({"y": [1, None], "x": [-1, 5]})
    out = check_batch(df, SchemaConfig(), "y")
    assert out[REASON_COLUMN].isna().tolist() == [True, False]


# --------------------------------------------------------------------------- rules named


def test_every_failure_names_its_column_and_rule() -> None:
    schema = SchemaConfig(columns={**SCHEMA.columns,
                                   "code": ColumnContract(type="string", regex=r"[A-Z]{2}\d{2}")})
    rows = [good_row(code="AB12"), good_row(code="ab12"), good_row(tenure=-1.0, code="AB12"),
            good_row(tenure=101.0, code="AB12"), good_row(plan="gold", code="AB12"),
            good_row(age=None, code="AB12"), good_row(age="x", code="AB12"),
            good_row(y=None, code="AB12")]
    out = check_batch(frame(rows).assign(code=[r["code"] for r in rows]), schema, "y")
    got = [None if pd.isna(c) else (c, r) for c, r in zip(out[COLUMN_COLUMN], out[RULE_COLUMN],
                                                           strict=True)]
    assert got == [None, ("code", "regex"), ("tenure", "min"), ("tenure", "max"),
                   ("plan", "allowed"), ("age", "nullable"), ("age", "type"), ("y", "target")]
    assert out[REASON_COLUMN].iloc[1] == "code: does not match regex '[A-Z]{2}\\d{2}': ab12"


@pytest.mark.parametrize(("value", "ok"), [("AB12", True), ("AB123", False), ("xAB12", False),
                                           ("", False), (None, True)])
def test_regex_must_match_the_whole_value(value: Any, ok: bool) -> None:
    schema = SchemaConfig(columns={"code": ColumnContract(type="string", regex=r"[A-Z]{2}\d{2}")})
    out = check_batch(pd.DataFrame({"code": [value], "y": [1]}), schema, "y")
    assert out[REASON_COLUMN].isna().iloc[0] == ok


def test_regex_config_is_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="does not compile"):
        ColumnContract(type="string", regex="[a-")
    with pytest.raises(ValidationError, match="regex only applies to string"):
        ColumnContract(type="int", regex=r"\d+")


def test_unique_key_takes_one_column_or_several() -> None:
    assert SchemaConfig(unique_key="id").unique_key == ["id"]  # type: ignore[arg-type]
    assert SchemaConfig(unique_key=["a", "b"]).unique_key == ["a", "b"]
    with pytest.raises(ValueError, match="repeats"):
        SchemaConfig(unique_key=["a", "a"])


def test_missing_unique_key_column_raises_naming_it() -> None:
    with pytest.raises(ContractError, match="order_id"):
        check_batch(pd.DataFrame({"y": [1]}), SchemaConfig(unique_key=["order_id"]), "y")


# --------------------------------------------------------------------------- unique key


def _block(ids: list[Any], reasons: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "n": range(len(ids)), REASON_COLUMN: pd.array(reasons, "string"),
                         COLUMN_COLUMN: pd.array([None if r is None else "x" for r in reasons],
                                                 "string"),
                         RULE_COLUMN: pd.array([None if r is None else "min" for r in reasons],
                                               "string")})


def test_duplicates_beyond_the_first_valid_row_are_quarantined() -> None:
    block = _block(["a", "b", "a", "a", "b", "c"], ["x: below min", None, None, None, None, None])
    out = mark_duplicate_keys(block, key=["id"])
    assert out[RULE_COLUMN].fillna("-").tolist() == ["min", "-", "-", "unique_key", "unique_key",
                                                     "-"]
    assert out[REASON_COLUMN].iloc[3] == "id: duplicate unique key (id=a)"
    assert out[REASON_COLUMN].iloc[4] == "id: duplicate unique key (id=b)"
    assert out["n"].tolist() == list(range(6))  # every row is returned, none dropped


def test_unique_rows_or_missing_keys_are_left_alone() -> None:
    unique = _block(["a", "b"], [None, None])
    pd.testing.assert_frame_equal(mark_duplicate_keys(unique, ["id"]), unique)
    nulls = _block([None, None, "a"], [None, None, None])
    assert mark_duplicate_keys(nulls, ["id"])[REASON_COLUMN].isna().all()


def test_composite_key_is_named_in_the_reason() -> None:
    g = pd.DataFrame({"a": [1, 1, 1], "b": ["x", "y", "x"],
                      REASON_COLUMN: pd.array([None] * 3, "string"),
                      COLUMN_COLUMN: pd.array([None] * 3, "string"),
                      RULE_COLUMN: pd.array([None] * 3, "string")})
    out = mark_duplicate_keys(g, ["a", "b"])
    assert out[COLUMN_COLUMN].fillna("-").tolist() == ["-", "-", "a+b"]
    assert out[REASON_COLUMN].iloc[2] == "a+b: duplicate unique key (a=1, b=x)"


# --------------------------------------------------------------------------- threshold


def _result(rows_in: int, bad: int, reasons: list[ReasonCount]) -> ValidationResult:
    return ValidationResult(valid=None, quarantined=None, rows_in=rows_in,  # type: ignore[arg-type]
                            rows_valid=rows_in - bad, rows_quarantined=bad, reasons=reasons)


def test_threshold_message_gives_share_threshold_and_top_reasons() -> None:
    result = _result(200, 30, [ReasonCount("tenure", "min", 20), ReasonCount("plan", "allowed", 10)])
    with pytest.raises(ContractError) as info:
        check_threshold(result, SchemaConfig(max_quarantine_fraction=0.05))
    msg = str(info.value)
    assert "30 of 200 rows (15.0%)" in msg and "max_quarantine_fraction=5.0%" in msg
    assert "tenure [min]: 20 rows; plan [allowed]: 10 rows" in msg


def test_threshold_allows_up_to_the_limit_and_refuses_no_rows() -> None:
    check_threshold(_result(100, 5, []), SchemaConfig(max_quarantine_fraction=0.05))
    with pytest.raises(ContractError, match="no rows"):
        check_threshold(_result(0, 0, []), SchemaConfig())


# --------------------------------------------------------------------------- Arrow blocks


def test_quarantined_rows_keep_the_input_types_exactly() -> None:
    import pyarrow as pa

    from pipelines.stages.validate import _annotate_block, _failed_block, _mark_block

    table = pa.table({"id": pa.array([1, 1, None, 4], pa.int64()),  # gaps: pandas makes floats
                      "when": pa.array([1, 2, 3, 4], pa.timestamp("ms", tz="UTC")),
                      "amount": [5.0, 6.0, -1.0, 7.0], "y": [1, 0, 1, 0]})
    schema = SchemaConfig(unique_key=["id"], columns={"amount": ColumnContract(type="float", min=0)})
    annotated = _mark_block(_annotate_block(table, schema, "y"), ["id"])
    bad = _failed_block(annotated)
    assert bad.schema.field("id").type == pa.int64()
    assert bad.schema.field("when").type == pa.timestamp("ms", tz="UTC")
    assert bad.column("id").to_pylist() == [1, None]
    assert bad.column(RULE_COLUMN).to_pylist() == ["unique_key", "min"]
    assert annotated.num_rows == 4 and annotated.column_names[:4] == table.column_names


# --------------------------------------------------------------------------- Arrow kernel vs pandas

_POOLS: dict[str, tuple[Any, list[Any]]] = {
    # column: (Arrow type, values to draw from; the first is valid and drawn most often)
    "age": ("int64", [30, 45, -1, 121, 0, 120, None]),
    "score": ("float64", [0.5, -0.1, 1.5, float("nan"), None, float("inf"), 1.0]),
    "count": ("float64", [3.0, 2.5, float("nan"), None, float("inf"), -4.0, 7.0]),
    "small": ("int32", [1, 2, 99, None]),
    "parsed": ("string", ["12", "x", " 7 ", "3.5", None, "1e3", "-2", "", "nan"]),
    "plan": ("string", ["basic", " Basic", "BASIC\t", "premium ", "gold", None, "Bäsic",
                        "\u0130", "", "prem"]),
    "code": ("string", ["AB12", "ab12", "AB123", "AB12\n", "AB\u0661\u0662", "", None, "XY99"]),
    "flag": ("bool", [True, False, None]),
    "flag_text": ("string", ["yes", "No", "1", "maybe", None]),
    "when": ("timestamp[ms]", [0, 86_400_000, None]),
    "when_text": ("string", ["2024-01-02", "not a date", None, "2024-02-03 10:30:00"]),
    "y": ("float64", [1.0, 0.0, float("nan"), None]),
}

_DIRTY = SchemaConfig(columns={
    "age": ColumnContract(type="int", nullable=False, min=0, max=120),
    "score": ColumnContract(type="float", min=0, max=1),
    "count": ColumnContract(type="int", nullable=False, min=0),
    "small": ColumnContract(type="float", max=50),
    "parsed": ColumnContract(type="int", min=0, max=100),
    "plan": ColumnContract(type="string", nullable=False, allowed=["basic", " PREMIUM", "bäsic"]),
    "code": ColumnContract(type="string", regex=r"[A-Z]{2}\d{2}"),
    "flag": ColumnContract(type="bool", nullable=False),
    "flag_text": ColumnContract(type="bool"),
    "when": ColumnContract(type="datetime", nullable=False),
    "when_text": ColumnContract(type="datetime"),
})


def _dirty_table(seed: int, rows: int = 400) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    cols = {}
    for name, (kind, pool) in _POOLS.items():
        dirty = rng.random(rows) < 0.1
        picked = [pool[i] if d else pool[0]
                  for i, d in zip(rng.integers(0, len(pool), rows), dirty, strict=True)]
        if kind.startswith("float"):  # NaN stays a value, None becomes a null
            cols[name] = pa.array(picked, pa.float64(), from_pandas=False)
        else:
            cols[name] = pa.array(picked, pa.type_for_alias(kind))
    return pa.table(cols)


def _arrow_check(table: Any, schema: SchemaConfig = _DIRTY) -> pd.DataFrame:
    from pipelines.stages.validate import _annotate_block

    return _annotate_block(table, schema, "y").select(QUARANTINE_COLUMNS).to_pandas()


@pytest.mark.parametrize("seed", range(12))
def test_arrow_kernel_gives_the_pandas_reasons_on_dirty_blocks(seed: int) -> None:
    table = _dirty_table(seed)
    expected = check_batch(table.to_pandas(), _DIRTY, "y")[QUARANTINE_COLUMNS]
    got = _arrow_check(table)
    for name in QUARANTINE_COLUMNS:
        want = [None if pd.isna(v) else v for v in expected[name]]
        have = [None if pd.isna(v) else v for v in got[name]]
        assert have == want, name
    assert 0 < expected[REASON_COLUMN].notna().sum() < len(table)  # the blocks are mixed


@pytest.mark.parametrize("seed", range(4))
def test_arrow_blocks_split_into_passed_and_quarantined_rows_exactly(seed: int) -> None:
    import pyarrow as pa

    from pipelines.stages.validate import _annotate_block, _failed_block, passed_rows

    table = _dirty_table(seed)
    annotated = _annotate_block(table, _DIRTY, "y")
    ok, bad = passed_rows(annotated, _DIRTY), _failed_block(annotated)
    assert ok.num_rows + bad.num_rows == table.num_rows
    assert ok.num_rows == int(annotated.column(REASON_COLUMN).null_count)
    assert bad.schema == annotated.schema  # quarantined rows as read, plus the reasons
    assert ok.column_names == table.column_names
    types = {f.name: f.type for f in ok.schema}
    assert types["age"] == types["count"] == types["parsed"] == pa.int64()
    assert types["score"] == types["small"] == pa.float64()
    assert types["flag"] == types["flag_text"] == pa.bool_()
    assert pa.types.is_timestamp(types["when"]) and pa.types.is_timestamp(types["when_text"])
    assert types["plan"] == types["code"] == pa.string()
    # every passed value is what the pandas path makes of it
    for col, contract in _DIRTY.columns.items():
        mask = annotated.column(REASON_COLUMN).is_null().to_numpy(zero_copy_only=False)
        raw = table.column(col).to_pandas()[mask].reset_index(drop=True)
        want = coerce_column(raw, contract.type)[0]
        have = ok.column(col).to_pandas()
        assert [None if pd.isna(v) else v for v in have] == \
            [None if pd.isna(v) else v for v in want], col


def test_arrow_messages_show_values_as_pandas_does() -> None:
    import pyarrow as pa

    schema = SchemaConfig(columns={"a": ColumnContract(type="int", min=0),
                                   "b": ColumnContract(type="int", min=0)})
    table = pa.table({"a": pa.array([-1, 5], pa.int64()),  # no gaps: pandas keeps int64
                      "b": pa.array([-3, None], pa.int64()),  # gaps: pandas holds floats
                      "y": [1, 1]})
    got = _arrow_check(table, schema)[REASON_COLUMN]
    assert got.iloc[0] == "a: below min 0.0: -1" and pd.isna(got.iloc[1])
    table = table.set_column(0, "a", pa.array([1, 5], pa.int64()))
    assert _arrow_check(table, schema)[REASON_COLUMN].iloc[0] == "b: below min 0.0: -3.0"


def test_infinity_is_not_a_valid_int() -> None:
    import pyarrow as pa

    _, bad = coerce_column(pd.Series([1.0, np.inf, -np.inf]), "int")
    assert bad.tolist() == [False, True, True]
    schema = SchemaConfig(columns={"n": ColumnContract(type="int")})
    table = pa.table({"n": [1.0, float("inf")], "y": [1, 1]})
    rules = _arrow_check(table, schema)[RULE_COLUMN]
    assert pd.isna(rules.iloc[0]) and rules.iloc[1] == "type"


def test_block_without_failures_gets_null_reasons() -> None:
    import pyarrow as pa

    table = pa.table({"age": pa.array([1, 2], pa.int64()), "y": [0, 1]})
    got = _arrow_check(table, SchemaConfig(columns={"age": ColumnContract(type="int")}))
    assert got.isna().all().all() and len(got) == 2
