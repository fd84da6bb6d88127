"""Unit tests of pipelines.profile on Arrow tables, without Ray."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import ProfileConfig
from pipelines.profile import DataProfile, _ColumnAcc, _Kmv, profile_tables


def table(**cols: list[object] | np.ndarray) -> pa.Table:
    return pa.table(dict(cols))


def kinds(p: DataProfile) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a in p.anomalies:
        out.setdefault(a.column or "", set()).add(a.kind)
    return out


def test_numeric_statistics_match_numpy_across_blocks() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(10, 3, 5000)
    blocks = [table(x=x[i:i + 700]) for i in range(0, 5000, 700)]
    c = profile_tables(blocks).columns["x"]
    assert c.kind == "float" and c.count == 5000 and c.nulls == 0
    assert c.min == pytest.approx(x.min()) and c.max == pytest.approx(x.max())
    assert c.mean == pytest.approx(x.mean())
    assert c.std == pytest.approx(x.std(ddof=1))
    assert c.quantiles is not None
    for name, q in [("p05", 0.05), ("p50", 0.5), ("p95", 0.95)]:
        # KLL rank error is about 1.7% at k=200: compare ranks, not values
        assert abs((x <= c.quantiles[name]).mean() - q) < 0.03
    assert abs(c.distinct - 5000) < 250 and not c.distinct_exact  # above the exact limit


def test_nulls_and_nan_count_as_missing() -> None:
    c = profile_tables([table(x=[1.0, None, float("nan"), 4.0])]).columns["x"]
    assert c.nulls == 2 and c.null_fraction == 0.5
    assert c.mean == pytest.approx(2.5) and c.distinct == 2


def test_top_values_are_exact_for_few_values() -> None:
    blocks = [table(s=["a", "b", "a", None]), table(s=["a", "c", "b"])]
    c = profile_tables(blocks, ProfileConfig(top_values=2)).columns["s"]
    assert c.kind == "string" and c.distinct == 3 and c.distinct_exact
    # few distinct values: all listed (the contract's `allowed` needs them), with exact counts
    assert [(t.value, t.count) for t in c.top_values] == [("a", 3), ("b", 2), ("c", 1)]
    assert c.top_values_complete


def test_many_values_list_only_the_top_ones() -> None:
    values = [f"v{i}" for i in range(100)] + ["hot"] * 50
    c = profile_tables([table(s=values)], ProfileConfig(top_values=3)).columns["s"]
    assert len(c.top_values) == 3 and c.top_values[0].value == "hot" and c.top_values[0].count == 50
    assert not c.top_values_complete


def test_distinct_estimate_is_close_for_many_values() -> None:
    values = np.arange(50_000) % 20_000
    c = profile_tables([table(x=values[i:i + 10_000]) for i in range(0, 50_000, 10_000)]).columns["x"]
    assert c.kind == "int"
    assert abs(c.distinct - 20_000) / 20_000 < 0.06


def test_datetime_columns_get_iso_bounds() -> None:
    ts = pd.to_datetime(["2024-01-02 00:00", "2023-05-06 10:00", None]).as_unit("us")
    c = profile_tables([pa.table({"t": pa.array(ts)})]).columns["t"]
    assert c.kind == "datetime" and c.nulls == 1
    assert c.min == "2023-05-06T10:00:00" and c.max == "2024-01-02T00:00:00"


def test_anomalies_are_found() -> None:
    n = 100
    data = table(
        empty=pa.nulls(n, pa.float64()),
        same=["x"] * n,
        holes=[1.0 if i % 4 == 0 else None for i in range(n)],
        mixed=[str(i) for i in range(n - 10)] + ["unknown"] * 10,
        texty=[str(i) for i in range(n)],
        spiky=[1.0, 2.0, 3.0, 4.0] * 24 + [1e6] * 4,
        ident=[f"id{i}" for i in range(n)],
        fine=list(range(n)),
        signs=[-1.0] + [float(i) for i in range(1, n)],
    )
    found = kinds(profile_tables([data], ProfileConfig(high_null_fraction=0.5)))
    assert found["empty"] == {"all_null"}
    assert found["same"] == {"constant"}
    assert found["holes"] == {"high_null_rate", "constant"}
    assert "mixed_types" in found["mixed"]
    assert "numbers_as_text" in found["texty"]
    assert found["spiky"] == {"outliers"}
    assert found["ident"] == {"identifier"}
    assert found["signs"] == {"rare_negatives"}
    assert "fine" not in found


def test_types_that_differ_between_blocks_are_mixed() -> None:
    p = profile_tables([table(a=[1, 2]), table(a=["x", "y"])])
    assert p.columns["a"].arrow_types == ["int64", "string"]
    assert p.columns["a"].kind == "other"
    assert "mixed_types" in kinds(p)["a"]


def test_empty_data_is_an_anomaly() -> None:
    p = profile_tables([table(a=pa.array([], pa.int64()))])
    assert p.rows == 0 and p.anomalies[0].kind == "empty"


def test_accumulator_survives_pickling_between_tasks() -> None:
    acc = _ColumnAcc()
    acc.update(pa.array([1.0, 2.0, None]))
    back = pickle.loads(pickle.dumps(acc))
    back.update(pa.array([3.0]))
    assert back.kll.n == 3 and back.nulls == 1 and back.mean == pytest.approx(2.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.integers(-1000, 1000)), max_size=30),
                min_size=1, max_size=5))
def test_merging_blocks_equals_one_pass(blocks: list[list[int | None]]) -> None:
    """Property: however the rows are cut into blocks, the statistics are the same."""
    flat = [v for b in blocks for v in b]
    merged = profile_tables([pa.table({"x": pa.array(b, pa.int64())}) for b in blocks]).columns["x"]
    whole = profile_tables([pa.table({"x": pa.array(flat, pa.int64())})]).columns["x"]
    values = [v for v in flat if v is not None]
    assert merged.count == whole.count == len(flat)
    assert merged.nulls == whole.nulls == len(flat) - len(values)
    assert merged.distinct == whole.distinct == len(set(values))
    if values:
        assert merged.min == min(values) and merged.max == max(values)
        assert merged.mean == pytest.approx(float(np.mean(values)))
        assert merged.std == pytest.approx(whole.std, abs=1e-6)


def test_kmv_is_exact_below_its_size() -> None:
    k = _Kmv(64)
    k.update(np.array(["a", "b", "a"], dtype=object))
    k.update(np.array(["c"], dtype=object))
    assert k.exact and k.estimate() == 3


def test_dates_categoricals_and_nested_columns_are_profiled() -> None:
    import datetime as dt

    t = pa.table({
        "d": pa.array([dt.date(2024, 1, 2), dt.date(2023, 1, 1), None], pa.date32()),
        "cat": pa.array(["a", "b", "a"]).dictionary_encode(),
        "nested": pa.array([[1, 2], None, [3]]),
    })
    p = profile_tables([t])
    assert (p.columns["d"].kind, p.columns["d"].min, p.columns["d"].distinct) == \
        ("datetime", "2023-01-01", 2)
    assert p.columns["cat"].kind == "string" and p.columns["cat"].top_values[0].value == "a"
    assert (p.columns["nested"].kind, p.columns["nested"].nulls) == ("other", 1)
