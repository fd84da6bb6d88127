"""Unit tests for the fitted FeaturePipeline (built by hand; fitting needs Ray) and infer_task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.config import RatioFeature
from pipelines.features.pipeline import (
    CategoricalStats,
    FeaturePipeline,
    MissingColumnsError,
    NumericStats,
    infer_task,
)

PLAN_VOCAB = ["basic", "premium", "standard"]


def raw_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure": [1.0, np.nan, 500.0, -20.0],
            "charges": [10.0, 20.0, 0.0, np.nan],
            "autopay": [True, False, True, False],
            "plan": [" BASIC ", "premium", None, "gold"],
            "signup": pd.to_datetime(
                ["2024-01-15 10:00", "2023-06-30 23:00", None, "2022-12-01 00:00"]
            ),
            "notes": ["a", "b", "c", "d"],
            "y": ["yes", "no", "no", "yes"],
        },
        index=[10, 11, 12, 13],
    )


def make_pipeline(frame: pd.DataFrame | None = None, **changes: Any) -> FeaturePipeline:
    fields: dict[str, Any] = {
        "target": "y",
        "task": "binary",
        "classes": ["no", "yes"],
        "input_schema": {
            "tenure": "float",
            "charges": "float",
            "autopay": "bool",
            "plan": "string",
            "signup": "datetime",
            "notes": "string",
        },
        "optional_columns": ["notes"],
        "numeric": {
            "tenure": NumericStats(fill=12.0, lower=0.0, upper=72.0),
            "charges": NumericStats(fill=5.0),
        },
        "boolean": ["autopay"],
        "categorical": {"plan": CategoricalStats(fill="basic", vocab=PLAN_VOCAB)},
        "datetime": ["signup"],
        "datetime_parts": ["year", "month", "dayofweek", "hour"],
        "ratios": [RatioFeature(name="tenure_per_charge", numerator="tenure",
                                denominator="charges")],
        "encoding": "ordinal",
        "normalize_categories": True,
        "feature_names": [],
        **changes,
    }
    pipeline = FeaturePipeline(**fields)
    names = list(pipeline._all_features(raw_frame() if frame is None else frame).columns)
    return pipeline.model_copy(update={"feature_names": names})


@pytest.fixture
def pipeline() -> FeaturePipeline:
    return make_pipeline()


@pytest.fixture
def features(pipeline: FeaturePipeline) -> pd.DataFrame:
    return pipeline.transform(raw_frame())


# --------------------------------------------------------------------------- transform


def test_output_shape_index_and_dtype(pipeline: FeaturePipeline, features: pd.DataFrame) -> None:
    assert len(features) == 4
    assert features.index.tolist() == [10, 11, 12, 13]
    assert list(features.columns) == pipeline.feature_names
    assert (features.dtypes == "float64").all()


def test_feature_names(pipeline: FeaturePipeline) -> None:
    assert pipeline.feature_names == [
        "tenure", "charges", "autopay", "plan",
        "signup_year", "signup_month", "signup_dayofweek", "signup_hour",
        "tenure_per_charge",
    ]
    # Neither the target nor unused columns become features.
    assert "y" not in pipeline.feature_names
    assert "notes" not in pipeline.feature_names


def test_numeric_imputation_and_clipping(features: pd.DataFrame) -> None:
    # 1 stays, NaN -> fill 12, 500 -> upper 72, -20 -> lower 0.
    assert features["tenure"].tolist() == [1.0, 12.0, 72.0, 0.0]
    # No bounds: no clipping, only the fill.
    assert features["charges"].tolist() == [10.0, 20.0, 0.0, 5.0]


def test_numeric_values_given_as_text_are_parsed(pipeline: FeaturePipeline) -> None:
    df = raw_frame()
    df["tenure"] = ["3", "oops", "100", None]
    assert pipeline.transform(df)["tenure"].tolist() == [3.0, 12.0, 72.0, 12.0]


def test_boolean_as_float(features: pd.DataFrame) -> None:
    assert features["autopay"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_ordinal_categories_are_normalised_imputed_and_unseen_share_a_code(
    features: pd.DataFrame,
) -> None:
    # ' BASIC ' -> 'basic' (0); 'premium' (1); missing -> fill 'basic' (0);
    # unseen 'gold' -> len(vocab).
    assert features["plan"].tolist() == [0.0, 1.0, 0.0, float(len(PLAN_VOCAB))]


def test_without_normalisation_spelling_variants_are_unseen() -> None:
    pipeline = make_pipeline(normalize_categories=False)
    out = pipeline.transform(raw_frame())
    assert out["plan"].tolist() == [3.0, 1.0, 0.0, 3.0]


def test_onehot_columns() -> None:
    pipeline = make_pipeline(encoding="onehot")
    assert [n for n in pipeline.feature_names if n.startswith("plan")] == [
        "plan=basic", "plan=premium", "plan=standard", "plan=__other__",
    ]
    assert "plan" not in pipeline.feature_names
    out = pipeline.transform(raw_frame())
    onehot = out[["plan=basic", "plan=premium", "plan=standard", "plan=__other__"]]
    assert onehot.to_numpy().tolist() == [
        [1.0, 0.0, 0.0, 0.0],  # ' BASIC '
        [0.0, 1.0, 0.0, 0.0],  # 'premium'
        [1.0, 0.0, 0.0, 0.0],  # missing -> fill 'basic'
        [0.0, 0.0, 0.0, 1.0],  # unseen 'gold'
    ]
    assert (onehot.sum(axis=1) == 1.0).all()


def test_datetime_parts(features: pd.DataFrame) -> None:
    row = features.loc[10]
    assert (row["signup_year"], row["signup_month"]) == (2024.0, 1.0)
    assert row["signup_dayofweek"] == 0.0  # 2024-01-15 was a Monday
    assert row["signup_hour"] == 10.0
    assert features.loc[11, "signup_hour"] == 23.0
    assert features.loc[12, ["signup_year", "signup_month", "signup_dayofweek",
                             "signup_hour"]].isna().all()


def test_datetime_given_as_text_is_parsed(pipeline: FeaturePipeline) -> None:
    df = raw_frame()
    df["signup"] = ["2024-01-15 10:00:00", "garbage", None, "2022-12-01"]
    out = pipeline.transform(df)
    assert out.loc[10, "signup_month"] == 1.0
    assert out.loc[10, "signup_hour"] == 10.0
    assert np.isnan(out.loc[11, "signup_month"])
    assert out.loc[13, "signup_year"] == 2022.0


def test_ratio_uses_cleaned_values_and_zero_denominator_gives_nan(
    features: pd.DataFrame,
) -> None:
    ratio = features["tenure_per_charge"]
    assert ratio.loc[10] == pytest.approx(1.0 / 10.0)
    assert ratio.loc[11] == pytest.approx(12.0 / 20.0)  # imputed numerator
    assert np.isnan(ratio.loc[12])  # 72 / 0
    assert ratio.loc[13] == pytest.approx(0.0 / 5.0)  # clipped numerator, imputed denominator
    assert not np.isinf(ratio).any()


def test_ratio_of_columns_that_are_not_numeric_features() -> None:
    df = raw_frame().assign(a=[1.0, 2.0, 3.0, 4.0], b=[2.0, 0.0, np.nan, -4.0])
    pipeline = make_pipeline(
        df,
        input_schema={**make_pipeline().input_schema, "a": "float", "b": "float"},
        optional_columns=["notes", "a", "b"],
        ratios=[RatioFeature(name="a_per_b", numerator="a", denominator="b")],
    )
    out = pipeline.transform(df)["a_per_b"]
    assert out.loc[10] == 0.5
    assert np.isnan(out.loc[11]) and np.isnan(out.loc[12])
    assert out.loc[13] == -1.0


def test_feature_names_select_and_order_the_output(pipeline: FeaturePipeline) -> None:
    subset = pipeline.model_copy(update={"feature_names": ["plan", "tenure"]})
    out = subset.transform(raw_frame())
    assert list(out.columns) == ["plan", "tenure"]
    assert out["tenure"].tolist() == [1.0, 12.0, 72.0, 0.0]


def test_transform_handles_an_empty_frame(pipeline: FeaturePipeline) -> None:
    out = pipeline.transform(raw_frame().iloc[:0])
    assert len(out) == 0
    assert list(out.columns) == pipeline.feature_names


def test_transform_does_not_modify_the_input(pipeline: FeaturePipeline) -> None:
    df = raw_frame()
    pipeline.transform(df)
    pd.testing.assert_frame_equal(df, raw_frame())


def test_extra_columns_are_ignored(pipeline: FeaturePipeline, features: pd.DataFrame) -> None:
    out = pipeline.transform(raw_frame().assign(unexpected=1))
    pd.testing.assert_frame_equal(out, features)


# --------------------------------------------------------------------------- columns


def test_missing_required_column_raises_naming_it(pipeline: FeaturePipeline) -> None:
    with pytest.raises(MissingColumnsError, match="plan"):
        pipeline.transform(raw_frame().drop(columns=["plan"]))


def test_missing_columns_are_all_named(pipeline: FeaturePipeline) -> None:
    with pytest.raises(MissingColumnsError) as info:
        pipeline.check_columns(["plan", "signup"])
    msg = str(info.value)
    for col in ["tenure", "charges", "autopay"]:
        assert col in msg
    assert "notes" not in msg  # optional


def test_optional_columns_may_be_absent(
    pipeline: FeaturePipeline, features: pd.DataFrame
) -> None:
    out = pipeline.transform(raw_frame().drop(columns=["notes", "y"]))
    pd.testing.assert_frame_equal(out, features)


def test_target_is_not_needed_for_transform(pipeline: FeaturePipeline) -> None:
    pipeline.check_columns(raw_frame().drop(columns=["y"]).columns)  # no error
    assert "y" not in pipeline.input_schema


# --------------------------------------------------------------------------- target


def test_encode_decode_round_trip(pipeline: FeaturePipeline) -> None:
    labels = pd.Series(["yes", "no", "no", "yes"])
    codes = pipeline.encode_target(labels)
    assert codes.dtype == np.float64
    assert codes.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert pipeline.decode_target(codes) == labels.tolist()


def test_encode_target_matches_int_float_and_text_spellings() -> None:
    pipeline = make_pipeline(task="multiclass", classes=[0, 1, 2])
    codes = pipeline.encode_target(pd.Series([2, 1.0, "0", np.int64(1)], dtype=object))
    assert codes.tolist() == [2.0, 1.0, 0.0, 1.0]
    assert pipeline.decode_target(np.array([2, 0])) == [2, 0]


def test_encode_target_bool_classes() -> None:
    pipeline = make_pipeline(classes=[False, True])
    assert pipeline.encode_target(pd.Series([True, False])).tolist() == [1.0, 0.0]
    assert pipeline.decode_target(np.array([0.0, 1.0])) == [False, True]


def test_unseen_label_raises(pipeline: FeaturePipeline) -> None:
    with pytest.raises(ValueError, match="unseen in training") as info:
        pipeline.encode_target(pd.Series(["yes", "maybe", "no"]))
    assert "maybe" in str(info.value)
    assert "'y'" in str(info.value)


def test_regression_target_is_float() -> None:
    pipeline = make_pipeline(task="regression", classes=None)
    out = pipeline.encode_target(pd.Series(["1.5", 2, None]))
    assert out[:2].tolist() == [1.5, 2.0]
    assert np.isnan(out[2])


# --------------------------------------------------------------------------- infer_task


@pytest.mark.parametrize(
    ("labels", "numeric", "task"),
    [
        ([0, 1], True, "binary"),
        (["no", "yes"], False, "binary"),
        ([False, True], False, "binary"),
        ([0.5, 1.5], True, "binary"),
        ([0, 1, None], True, "binary"),
        ([0.0, 1.0, float("nan")], True, "binary"),
        ([0, 1, 2], True, "multiclass"),
        (["a", "b", "c"], False, "multiclass"),
        (list(range(20)), True, "multiclass"),
        (list(range(21)), True, "regression"),
        ([0.5, 1.0, 2.0], True, "regression"),
        ([str(i) for i in range(30)], False, "multiclass"),
    ],
)
def test_infer_task(labels: list[Any], numeric: bool, task: str) -> None:
    assert infer_task(labels, numeric) == task


@pytest.mark.parametrize("labels", [[1], [], [None, 1], ["only"], [float("nan"), 3.0]])
def test_infer_task_needs_two_values(labels: list[Any]) -> None:
    with pytest.raises(ValueError, match="need at least 2"):
        infer_task(labels, numeric=True)


# --------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("encoding", ["ordinal", "onehot"])
def test_json_round_trip_transforms_identically(encoding: str) -> None:
    pipeline = make_pipeline(encoding=encoding)
    restored = FeaturePipeline.model_validate_json(pipeline.model_dump_json())
    assert restored == pipeline
    pd.testing.assert_frame_equal(
        restored.transform(raw_frame()), pipeline.transform(raw_frame())
    )


@pytest.mark.parametrize(
    "classes", [["no", "yes"], [0, 1, 2], [False, True], [0.5, 1.5], None]
)
def test_json_round_trip_keeps_class_types(classes: list[Any] | None) -> None:
    pipeline = make_pipeline(classes=classes)
    restored = FeaturePipeline.model_validate_json(pipeline.model_dump_json())
    assert restored.classes == classes
    if classes is not None:
        assert [type(c) for c in restored.classes or []] == [type(c) for c in classes]


def test_pipeline_is_frozen(pipeline: FeaturePipeline) -> None:
    with pytest.raises(ValueError):
        pipeline.encoding = "onehot"  # type: ignore[misc]
    assert pipeline.encoding == "ordinal"
