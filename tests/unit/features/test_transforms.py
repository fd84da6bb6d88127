"""Every cleaning and feature transform of the fitted pipeline, on small frames (no Ray).

Pipelines are built by hand with known statistics; fitting them is tested in
tests/integration/test_feature_fit.py. Property tests (hypothesis) check what must hold for
any input: imputation leaves no missing value, clipping stays within the fitted bounds, and
the Arrow and pandas paths (batch and online inference) give the same features.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import DerivedFeature, RatioFeature
from pipelines.features.pipeline import (
    BinStats,
    CategoricalStats,
    FeaturePipeline,
    NumericStats,
    ScaleStats,
    _empty_frame,
    hash_buckets,
)
from pipelines.model.engine import columns_to_frame
from pipelines.model.fastpath import CompiledPipeline
from pipelines.model.spec import ModelSpec

SCHEMA = {"x": "float", "z": "float", "flag": "bool", "color": "string", "city": "string",
          "when": "datetime"}


def build(**changes: Any) -> FeaturePipeline:
    fields: dict[str, Any] = {
        "target": "y", "task": "binary", "classes": [0, 1], "input_schema": SCHEMA,
        "numeric": {"x": NumericStats(fill=5.0, lower=0.0, upper=10.0, indicator=True),
                    "z": NumericStats(fill=-1.0)},
        "boolean": ["flag"],
        "categorical": {
            "color": CategoricalStats(fill="red", vocab=["red", "green", "blue"],
                                      synonyms={"grn": "green", "rd": "red"}, indicator=True),
            "city": CategoricalStats(fill="paris", vocab=["paris"], encoding="hashed"),
        },
        "datetime": ["when"], "datetime_parts": ["quarter", "dayofyear", "minute", "is_weekend"],
        "ratios": [RatioFeature(name="x_per_z", numerator="x", denominator="z")],
        "derived": [DerivedFeature(name="x2", expr="x * x + flag"),
                    DerivedFeature(name="big", expr="x2 > 50")],
        "bins": [BinStats(column="z", edges=[0.0, 10.0])],
        "encoding": "onehot", "hash_buckets": 4, "normalize_categories": True,
        "feature_names": [],
        **changes,
    }
    pipe = FeaturePipeline(**fields)
    names = list(pipe._all_features(_empty_frame(pipe.input_schema)).columns)
    return pipe.model_copy(update={"feature_names": fields["feature_names"] or names})


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "x": [1.0, np.nan, 50.0, -3.0],
        "z": [2.0, 0.0, np.nan, 20.0],
        "flag": [True, False, True, False],
        "color": [" GRN ", None, "Rd", "purple"],
        "city": ["Paris", "lyon", None, "nice"],
        "when": pd.to_datetime(["2024-03-30 10:15", "2024-12-31 00:59", None,
                                "2024-07-01 23:00"]),
    })


def test_feature_names_in_step_order() -> None:
    assert build().feature_names == [
        "x", "x_missing", "z", "flag",
        "color=red", "color=green", "color=blue", "color=__other__", "color_missing",
        "city__hash0", "city__hash1", "city__hash2", "city__hash3",
        "when_quarter", "when_dayofyear", "when_minute", "when_is_weekend",
        "x_per_z", "x2", "big", "z_bin",
    ]


def test_numeric_fill_clip_and_missing_indicator() -> None:
    out = build().transform(frame())
    assert out["x"].tolist() == [1.0, 5.0, 10.0, 0.0]
    assert out["x_missing"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert out["z"].tolist() == [2.0, 0.0, -1.0, 20.0]


def test_category_normalisation_synonyms_fill_and_indicator() -> None:
    out = build().transform(frame())
    # " GRN " -> "grn" -> "green"; missing -> fill "red"; "Rd" -> "red"; "purple" unseen.
    assert out["color=green"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert out["color=red"].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert out["color=__other__"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert out["color_missing"].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_synonyms_without_normalisation_match_exact_text() -> None:
    pipe = build(normalize_categories=False)
    out = pipe.transform(frame().assign(color=["grn", "GRN", "rd", None]))
    assert out["color=green"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert out["color=__other__"].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_hashed_encoding_sets_one_bucket_per_row_and_ignores_spelling() -> None:
    out = build().transform(frame().assign(city=["Paris", " paris", None, "lyon"]))
    buckets = out[[f"city__hash{i}" for i in range(4)]].to_numpy()
    assert (buckets.sum(axis=1) == 1).all()
    # " paris" and a missing value (filled with "paris") land where "Paris" lands.
    assert (buckets[1] == buckets[0]).all() and (buckets[2] == buckets[0]).all()


def test_hash_buckets_are_the_same_in_another_process() -> None:
    values = ["paris", "lyon", "nice", "x" * 40, "é"]
    here = hash_buckets(pa.array(values), 1000).tolist()
    code = ("import pyarrow as pa; from pipelines.features.pipeline import hash_buckets; "
            f"print(hash_buckets(pa.array({values!r}), 1000).tolist())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True).stdout.strip()
    assert there == str(here)
    assert len(set(here)) > 1


def test_new_datetime_parts() -> None:
    out = build().transform(frame())
    assert out["when_quarter"].tolist()[:2] == [1.0, 4.0]
    assert out["when_dayofyear"].tolist()[:2] == [90.0, 366.0]  # 2024 is a leap year
    assert out["when_minute"].tolist()[:2] == [15.0, 59.0]
    assert out["when_is_weekend"].tolist()[0] == 1.0  # 2024-03-30 is a Saturday
    assert out["when_is_weekend"].tolist()[3] == 0.0
    assert np.isnan(out["when_quarter"].iloc[2])


def test_derived_features_read_cleaned_values_and_earlier_features() -> None:
    out = build().transform(frame())
    assert out["x2"].tolist() == [2.0, 25.0, 101.0, 0.0]
    assert out["big"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_bins_use_cleaned_values_and_fixed_edges() -> None:
    out = build().transform(frame())
    # z cleaned: [2, 0, -1, 20]; edges [0, 10]: bin = number of edges <= value.
    assert out["z_bin"].tolist() == [1.0, 1.0, 0.0, 2.0]


def test_scaling_is_applied_last_and_selection_keeps_only_frozen_features() -> None:
    pipe = build(feature_names=["z", "x"],
                 scale={"x": ScaleStats(shift=5.0, divisor=2.0), "z": ScaleStats(shift=0, divisor=4)})
    out = pipe.transform(frame())
    assert list(out.columns) == ["z", "x"]
    assert out["x"].tolist() == [-2.0, 0.0, 2.5, -2.5]
    assert out["z"].tolist() == [0.5, 0.0, -0.25, 5.0]


def test_full_pipeline_json_round_trip_transforms_identically() -> None:
    pipe = build(scale={"x": ScaleStats(shift=1.0, divisor=3.0)},
                 dropped_features={"z_bin": "variance 0 <= 0"})
    again = FeaturePipeline.model_validate_json(pipe.model_dump_json())
    assert again == pipe
    pd.testing.assert_frame_equal(again.transform(frame()), pipe.transform(frame()))


def test_arrow_batch_gives_the_same_features_as_pandas() -> None:
    pipe = build()
    df = frame()
    got = pipe.transform_table(pa.Table.from_pandas(df)).to_pandas()
    pd.testing.assert_frame_equal(got, pipe.transform(df).reset_index(drop=True))


def test_arrow_types_read_natively_or_parsed() -> None:
    pipe = build()
    df = frame()
    table = pa.table({
        "x": pa.array(["1", None, "50", "oops"]),  # numbers as text: parsed, bad -> missing
        "z": pa.array([2, 0, None, 20], pa.int32()),
        "flag": pa.array([True, False, True, None]),
        "color": pa.array([" GRN ", None, "Rd", "purple"]).dictionary_encode(),
        "city": pa.array(["Paris", "lyon", None, "nice"], pa.large_string()),
        "when": pa.array([datetime(2024, 3, 30).date(), datetime(2024, 12, 31).date(), None,
                          datetime(2024, 7, 1).date()]),
    })
    got = pipe.transform_table(table).to_pandas()
    assert got["x"].tolist() == [1.0, 5.0, 10.0, 5.0]
    assert got["x_missing"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert got["z"].tolist() == [2.0, 0.0, -1.0, 20.0]
    assert got["color=green"].tolist() == pipe.transform(df)["color=green"].tolist()
    assert got["when_dayofyear"].tolist()[:2] == [90.0, 366.0]


def test_numeric_codes_as_categories_spell_the_same_with_or_without_nulls() -> None:
    pipe = build(input_schema={**SCHEMA, "city": "string"},
                 categorical={"city": CategoricalStats(fill="1", vocab=["1", "2"])},
                 encoding="ordinal")
    with_null = pa.table({**{c: frame()[c] for c in SCHEMA if c != "city"},
                          "city": pa.array([2, 1, None, 3], pa.int64())})
    as_float = frame().assign(city=[2.0, 1.0, np.nan, 3.0])
    want = [1.0, 0.0, 0.0, 2.0]  # "2", "1", missing -> "1", unseen "3"
    assert pipe.transform_table(with_null).column("city").to_pylist() == want
    assert pipe.transform(as_float)["city"].tolist() == want
    as_objects = frame().assign(city=pd.Series([2, 1.0, None, "3"], dtype=object))  # Serve, pyfunc
    assert pipe.transform(as_objects)["city"].tolist() == want


def test_compiled_fast_path_equals_the_pandas_pipeline_with_every_step() -> None:
    pipe = build(scale={"x": ScaleStats(shift=1.0, divisor=3.0)})
    rng = np.random.default_rng(4)
    n = 300

    def maybe(values: list[Any]) -> list[Any]:
        return [None if rng.random() < 0.2 else v for v in values]

    cols: dict[str, list[Any]] = {
        "x": maybe([float(v) for v in rng.normal(5, 8, n)]),
        "z": maybe([float(v) for v in rng.normal(5, 8, n)]),
        "flag": maybe([bool(v) for v in rng.random(n) < 0.5]),
        "color": maybe([str(rng.choice([" GRN", "rd ", "Blue", "pink"])) for _ in range(n)]),
        "city": maybe([str(rng.choice(["Paris", "lyon", "nice", "rome "])) for _ in range(n)]),
        "when": maybe([datetime(2020, 1, 1) + timedelta(minutes=int(m))
                       for m in rng.integers(0, 10**6, n)]),
    }
    compiled = CompiledPipeline(pipe)
    assert compiled.accepts(cols)
    want = pipe.transform(columns_to_frame(cols, ModelSpec(pipeline=pipe, name="u"))).to_numpy()
    np.testing.assert_array_equal(compiled.transform(cols, n), want)


# ---------------------------------------------------------------- properties

_num = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(-10**9, 10**9))
_cat = st.one_of(st.none(), st.text(max_size=5), st.sampled_from([" GRN ", "rd", "Blue", ""]))
_rows = st.lists(st.tuples(_num, _num, _cat, _cat), min_size=1, max_size=30)


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    df = frame().iloc[[0] * len(rows)].reset_index(drop=True)
    df["x"] = pd.Series([r[0] for r in rows], dtype=object)
    df["z"] = pd.Series([r[1] for r in rows], dtype=object)
    df["color"] = pd.Series([r[2] for r in rows], dtype=object)
    df["city"] = pd.Series([r[3] for r in rows], dtype=object)
    return df


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows)
def test_imputation_leaves_no_missing_values(rows: list[tuple[Any, ...]]) -> None:
    out = build().transform(_frame(rows))
    imputed = ["x", "z", "color=red", "color=green", "color=blue", "color=__other__",
               *(f"city__hash{i}" for i in range(4)), "x_missing", "color_missing"]
    assert not out[imputed].isna().any().any()
    assert ((out[[f"city__hash{i}" for i in range(4)]].sum(axis=1)) == 1).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows, st.floats(-1e6, 1e6), st.floats(0, 1e6))
def test_clipping_stays_within_the_fitted_bounds(rows: list[tuple[Any, ...]], lower: float,
                                                 width: float) -> None:
    pipe = build(numeric={"x": NumericStats(fill=lower, lower=lower, upper=lower + width),
                          "z": NumericStats(fill=0.0)})
    x = pipe.transform(_frame(rows))["x"]
    assert ((x >= lower) & (x <= lower + width)).all()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows)
def test_arrow_and_pandas_paths_agree_on_any_rows(rows: list[tuple[Any, ...]]) -> None:
    pipe = build(scale={"x": ScaleStats(shift=1.0, divisor=3.0)})
    df = _frame(rows)
    typed = df.assign(x=pd.to_numeric(df["x"], errors="coerce").astype("float64"),
                      z=pd.to_numeric(df["z"], errors="coerce").astype("float64"))
    want = pipe.transform(typed).reset_index(drop=True)
    got = pipe.transform_table(pa.Table.from_pandas(typed, preserve_index=False)).to_pandas()
    pd.testing.assert_frame_equal(got, want)


def test_missing_input_column_is_named_by_both_paths() -> None:
    pipe = build()
    df = frame().drop(columns=["city"])
    with pytest.raises(ValueError, match="city"):
        pipe.transform(df)
    with pytest.raises(ValueError, match="city"):
        pipe.transform_table(pa.Table.from_pandas(df))


def test_missing_features_are_arrow_nulls_that_ray_aggregations_skip() -> None:
    table = build().transform_table(pa.Table.from_pandas(frame()))
    ratio = table.column("x_per_z")  # z == 0 in row 1, the datetime of row 2 is missing
    assert ratio.null_count == 1 and ratio.to_pylist()[1] is None
    assert table.column("when_quarter").null_count == 1
    assert table.column("x").null_count == 0
