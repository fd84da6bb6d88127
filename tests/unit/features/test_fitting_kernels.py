"""The per-batch kernels behind fitting and row cleaning (no Ray): partial statistics and
their merge, feature moments and selection, quarantine reasons, keyed dedupe, config checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipelines.config import BinFeature, CleanConfig, ColumnImpute, FeaturesConfig
from pipelines.features.pipeline import FeaturePipeline, NumericStats
from pipelines.features.select import Moments, correlation_drops, variance_drops
from pipelines.features.stats import StatsPlan, TableStats, table_stats
from pipelines.stages.clean import _dedupe_block, _key_hash, missing_reasons, outlier_reasons, row_hash

_values = st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(_values, st.integers(1, 5))
def test_merged_batch_statistics_equal_those_of_the_whole(values: list[float | None],
                                                          parts: int) -> None:
    table = pa.table({"x": pa.array(values, pa.float64()),
                      "c": pa.array([None if v is None else str(round(v) % 3) for v in values])})
    plan = StatsPlan(numeric=["x"], counted=["c"])
    whole = table_stats(table, plan)
    merged = TableStats()
    for chunk in np.array_split(np.arange(len(values)), parts):
        if len(chunk):
            merged.merge(table_stats(table.take(pa.array(chunk)), plan))
    present = np.array([v for v in values if v is not None])
    assert merged.rows == len(values)
    assert merged.columns["x"].n == len(present)
    assert merged.columns["c"].counts == whole.columns["c"].counts
    if len(present):
        assert merged.columns["x"].mean() == pytest.approx(present.mean(), rel=1e-9, abs=1e-6)
        # Fewer values than the sketch size: the KLL sketch is exact.
        assert merged.columns["x"].quantiles([0.0, 1.0]) == [present.min(), present.max()]
        assert merged.columns["x"].std() == pytest.approx(present.std(), rel=1e-6, abs=1e-3)
    else:
        assert merged.columns["x"].quantiles([0.5]) is None
        assert merged.columns["x"].mean() is None


def test_statistics_survive_the_trip_between_processes() -> None:
    import pickle

    st_ = table_stats(pa.table({"x": [1.0, 2.0, 3.0, None]}), StatsPlan(["x"], []))
    back = pickle.loads(pickle.dumps(st_))
    assert back.columns["x"].quantiles([0.5]) == [2.0]
    assert back.columns["x"].n == 3


def test_moments_of_batches_add_up_and_find_correlated_and_constant_features() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    X = np.column_stack([a, 2 * a + 1, np.ones(500), rng.normal(size=500)])
    X[::7, 3] = np.nan
    m = Moments(4, pairs=True)
    for part in np.array_split(X, 3):
        m.merge(Moments(4, pairs=True).add(part))
    np.testing.assert_allclose(m.mean(), np.nanmean(X, axis=0))
    np.testing.assert_allclose(m.variance(), np.nanvar(X, axis=0), atol=1e-12)
    names = ["a", "a2", "one", "noise"]
    assert variance_drops(names, m, 0.0) == {"one": "variance 0 <= 0"}
    drops = correlation_drops(names, m, 0.95, skip={"one"})
    assert list(drops) == ["a2"] and "with 'a'" in drops["a2"]
    assert m.min[3] == np.nanmin(X[:, 3]) and m.max[0] == a.max()


def test_quarantine_reasons_name_the_first_problem() -> None:
    table = pa.table({"a": [1.0, None, 50.0, None], "b": ["x", None, None, "y"]})
    reasons = missing_reasons(table, ["a", "b"]).tolist()
    assert reasons == [None, "clean: a: missing value (impute strategy drop_row)",
                       "clean: b: missing value (impute strategy drop_row)",
                       "clean: a: missing value (impute strategy drop_row)"]
    pipe = FeaturePipeline(
        target="y", task="regression", input_schema={"a": "float"},
        numeric={"a": NumericStats(fill=0, lower=0.0, upper=10.0)}, boolean=[], categorical={},
        datetime=[], datetime_parts=[], ratios=[], encoding="ordinal",
        normalize_categories=True, feature_names=["a"])
    out = outlier_reasons(table, pipe).tolist()
    assert out == [None, None, "clean: a: outlier 50.0 outside [0, 10]", None]


def test_keyed_dedupe_keeps_the_same_row_whatever_the_order() -> None:
    df = pd.DataFrame({"k": [1, 1, 2, 1], "v": [3.0, 1.0, 2.0, 2.0]})
    keep = _dedupe_block(_key_hash(df, ["k"]), key=["k"])
    again = _dedupe_block(_key_hash(df.iloc[::-1], ["k"]), key=["k"])
    assert sorted(keep["k"]) == [1, 2]
    pd.testing.assert_frame_equal(keep.sort_values("k").reset_index(drop=True),
                                  again.sort_values("k").reset_index(drop=True))
    assert list(keep.columns) == ["k", "v"]
    assert len(_dedupe_block(row_hash(df))) == 4


def test_config_checks_name_the_field() -> None:
    with pytest.raises(ValidationError, match="needs edges"):
        BinFeature(column="a", method="fixed")
    with pytest.raises(ValidationError, match="strictly ascending"):
        BinFeature(column="a", method="fixed", edges=[1, 1])
    with pytest.raises(ValidationError, match="only applies to strategy 'constant'"):
        ColumnImpute(strategy="mean", value=3)
    with pytest.raises(ValidationError, match="used twice: r"):
        FeaturesConfig(ratios=[{"name": "r", "numerator": "a", "denominator": "b"}],
                       derived=[{"name": "r", "expr": "a"}])
    with pytest.raises(ValidationError, match="synonyms apply to categorical"):
        CleanConfig(synonyms={"a": {"x": "y"}}, coerce={"a": "float"})
    assert CleanConfig().outlier_action == "clip" and FeaturesConfig().scaling == "none"


def test_families_do_not_scale_features_the_pipeline_scaled() -> None:
    from pipelines.families.base import Standardizer

    X = np.array([[1.0, 10.0], [np.nan, 30.0], [3.0, 20.0]])
    own = Standardizer.fit(X)
    assert own.std != [1.0, 1.0]
    pre = Standardizer.fit(X, scale=False)
    assert pre.mean == [0.0, 0.0] and pre.std == [1.0, 1.0]
    np.testing.assert_array_equal(pre.apply(X), [[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]])


def test_variance_is_exact_when_the_mean_dwarfs_the_spread() -> None:
    rng = np.random.default_rng(1)
    x = 1e9 + rng.normal(0, 0.01, 3000)
    m = Moments(1, pairs=False)
    for part in np.array_split(x, 7):
        m.merge(Moments(1, pairs=False).add(part[:, None]))
    assert m.variance()[0] == pytest.approx(x.var(), rel=1e-6)
    merged = TableStats()
    for part in np.array_split(x, 7):
        merged.merge(table_stats(pa.table({"x": part}), StatsPlan(["x"], [])))
    assert merged.columns["x"].std() == pytest.approx(x.std(), rel=1e-6)
