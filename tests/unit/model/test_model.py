"""Unit tests for pipelines.model.predict_frame with tiny in-process XGBoost boosters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost

from pipelines.families.xgb import _Predictor as XGBPredictor
from pipelines.features.pipeline import (
    CategoricalStats,
    FeaturePipeline,
    MissingColumnsError,
    NumericStats,
)
from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN, ModelSpec, predict_frame

N = 200


def raw_frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x1[::17] = np.nan
    plan = rng.choice(["basic", " Premium", "STANDARD "], size=n).astype(object)
    plan[::23] = None
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": rng.uniform(0, 10, size=n),
            "autopay": rng.random(n) < 0.5,
            "plan": plan,
        }
    )


def make_pipeline(task: str, classes: list[Any] | None, encoding: str = "ordinal",
                  vocab: list[str] | None = None) -> FeaturePipeline:
    pipeline = FeaturePipeline(
        target="y",
        task=task,  # type: ignore[arg-type]
        classes=classes,
        input_schema={"x1": "float", "x2": "float", "autopay": "bool", "plan": "string"},
        numeric={"x1": NumericStats(fill=0.0, lower=-3.0, upper=3.0), "x2": NumericStats(fill=5.0)},
        boolean=["autopay"],
        categorical={"plan": CategoricalStats(fill="basic",
                                              vocab=vocab or ["basic", "premium", "standard"])},
        datetime=[],
        datetime_parts=[],
        ratios=[],
        encoding=encoding,  # type: ignore[arg-type]
        normalize_categories=True,
        feature_names=[],
    )
    names = list(pipeline._all_features(raw_frame(5)).columns)
    return pipeline.model_copy(update={"feature_names": names})


class _BoosterPredictor(XGBPredictor):
    """The XGBoost family's predictor, also exposing the booster's own predict for checks."""

    def predict(self, dmatrix: xgboost.DMatrix) -> np.ndarray:
        return np.asarray(self.booster.predict(dmatrix))


def train(pipeline: FeaturePipeline, df: pd.DataFrame, labels: pd.Series,
          params: dict[str, Any]) -> Any:
    features = pipeline.transform(df)
    dtrain = xgboost.DMatrix(
        features.to_numpy(), label=pipeline.encode_target(labels),
        feature_names=pipeline.feature_names,
    )
    booster = xgboost.train({**params, "nthread": 1, "seed": 0}, dtrain, num_boost_round=5)
    return _BoosterPredictor(booster)


def raw_predict(spec: ModelSpec, booster: xgboost.Booster, df: pd.DataFrame) -> np.ndarray:
    features = spec.pipeline.transform(df)
    return booster.predict(
        xgboost.DMatrix(features.to_numpy(), feature_names=spec.pipeline.feature_names)
    )


# --------------------------------------------------------------------------- binary


@pytest.fixture(scope="module")
def binary() -> tuple[ModelSpec, xgboost.Booster, pd.DataFrame]:
    df = raw_frame()
    x1 = df["x1"].fillna(0.0)
    labels = pd.Series(np.where(x1 + 0.2 * df["x2"] > 1.0, "yes", "no"))
    pipeline = make_pipeline("binary", ["no", "yes"])
    booster = train(pipeline, df, labels, {"objective": "binary:logistic"})
    return ModelSpec(pipeline=pipeline, name="churn"), booster, df


def test_binary_one_row_per_input(binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame]) -> None:
    spec, booster, df = binary
    out = predict_frame(spec, booster, df)
    assert len(out) == len(df)
    assert list(out.columns) == [PREDICTION_COLUMN, PROBABILITY_COLUMN]


def test_binary_labels_and_probabilities(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = binary
    out = predict_frame(spec, booster, df)
    assert set(out[PREDICTION_COLUMN]) == {"no", "yes"}
    proba = out[PROBABILITY_COLUMN]
    assert proba.dtype == np.float64
    assert ((proba >= 0) & (proba <= 1)).all()
    # probability is that of the positive (second) class, in input order
    np.testing.assert_allclose(proba.to_numpy(), raw_predict(spec, booster, df), rtol=1e-6)


def test_binary_model_learned_something(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = binary
    out = predict_frame(spec, booster, df)
    x1 = df["x1"].fillna(0.0)
    truth = np.where(x1 + 0.2 * df["x2"] > 1.0, "yes", "no")
    assert (out[PREDICTION_COLUMN].to_numpy() == truth).mean() > 0.8


@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9])
def test_binary_threshold(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame], quantile: float
) -> None:
    spec, booster, df = binary
    proba = raw_predict(spec, booster, df).astype("float64")
    # Trees give few distinct scores: put the threshold between two of them, so that ties
    # cannot decide the outcome and both labels occur.
    levels = np.unique(proba)
    i = min(max(int(quantile * len(levels)), 1), len(levels) - 1)
    threshold = float((levels[i - 1] + levels[i]) / 2)
    out = predict_frame(spec.model_copy(update={"threshold": threshold}), booster, df)
    expected = np.where(proba >= threshold, "yes", "no")
    assert out[PREDICTION_COLUMN].tolist() == expected.tolist()
    assert (out[PREDICTION_COLUMN] == "no").any()  # both classes at these thresholds
    assert (out[PREDICTION_COLUMN] == "yes").any()


def test_binary_threshold_is_inclusive(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = binary
    proba = predict_frame(spec, booster, df)[PROBABILITY_COLUMN].to_numpy()
    levels = np.unique(proba)
    threshold = float(levels[len(levels) // 2])  # exactly one of the scores
    assert (proba == threshold).any()
    out = predict_frame(spec.model_copy(update={"threshold": threshold}), booster, df)
    assert (out.loc[proba == threshold, PREDICTION_COLUMN] == "yes").all()


def test_binary_extreme_thresholds(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = binary
    low = predict_frame(spec.model_copy(update={"threshold": 0.0}), booster, df)
    high = predict_frame(spec.model_copy(update={"threshold": 1.0 + 1e-9}), booster, df)
    assert (low[PREDICTION_COLUMN] == "yes").all()
    assert (high[PREDICTION_COLUMN] == "no").all()


def test_binary_raising_threshold_never_adds_positives(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = binary
    counts = [
        (predict_frame(spec.model_copy(update={"threshold": t}), booster, df)[PREDICTION_COLUMN]
         == "yes").sum()
        for t in (0.2, 0.4, 0.6, 0.8)
    ]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > counts[-1]


def test_output_is_in_input_order_with_a_fresh_index(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = binary
    shuffled = df.sample(frac=1.0, random_state=3)  # non-default index
    out = predict_frame(spec, booster, shuffled)
    assert out.index.equals(pd.RangeIndex(len(df)))
    expected = predict_frame(spec, booster, df).iloc[shuffled.index].reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected)


def test_rows_with_missing_and_unseen_values_are_predicted(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, _ = binary
    odd = pd.DataFrame(
        {"x1": [np.nan, 1e9], "x2": [np.nan, -5.0], "autopay": [True, False],
         "plan": ["platinum", None]}
    )
    out = predict_frame(spec, booster, odd)
    assert len(out) == 2
    assert out[PREDICTION_COLUMN].isin(["no", "yes"]).all()
    assert out[PROBABILITY_COLUMN].between(0, 1).all()


def test_binary_empty_input(binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame]) -> None:
    spec, booster, df = binary
    with pytest.warns(UserWarning):  # xgboost warns about the empty DMatrix
        out = predict_frame(spec, booster, df.iloc[:0])
    assert len(out) == 0
    assert list(out.columns) == [PREDICTION_COLUMN, PROBABILITY_COLUMN]


def test_missing_column_raises(binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame]) -> None:
    spec, booster, df = binary
    with pytest.raises(MissingColumnsError, match="x2"):
        predict_frame(spec, booster, df.drop(columns=["x2"]))


def test_spec_json_round_trip_predicts_identically(
    binary: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = binary
    spec = spec.model_copy(update={"threshold": 0.4, "metrics": {"auc": 0.9}})
    restored = ModelSpec.model_validate_json(spec.model_dump_json())
    assert restored == spec
    pd.testing.assert_frame_equal(
        predict_frame(restored, booster, df), predict_frame(spec, booster, df)
    )


# --------------------------------------------------------------------------- multiclass


@pytest.fixture(scope="module")
def multiclass() -> tuple[ModelSpec, xgboost.Booster, pd.DataFrame]:
    df = raw_frame()
    x2 = df["x2"]
    labels = pd.Series(np.select([x2 < 3.3, x2 < 6.6], ["low", "mid"], "high"))
    pipeline = make_pipeline("multiclass", ["high", "low", "mid"], encoding="onehot")
    booster = train(pipeline, df, labels,
                    {"objective": "multi:softprob", "num_class": 3})
    return ModelSpec(pipeline=pipeline, name="tiers"), booster, df


def test_multiclass_columns_and_probabilities(
    multiclass: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = multiclass
    out = predict_frame(spec, booster, df)
    class_cols = [f"{PROBABILITY_COLUMN}_{c}" for c in ["high", "low", "mid"]]
    assert len(out) == len(df)
    assert list(out.columns) == [PREDICTION_COLUMN, PROBABILITY_COLUMN, *class_cols]
    proba = out[class_cols].to_numpy()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, raw_predict(spec, booster, df), rtol=1e-6)


def test_multiclass_prediction_is_the_most_likely_class(
    multiclass: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = multiclass
    out = predict_frame(spec, booster, df)
    class_cols = [f"{PROBABILITY_COLUMN}_{c}" for c in ["high", "low", "mid"]]
    best = out[class_cols].to_numpy().argmax(axis=1)
    assert out[PREDICTION_COLUMN].tolist() == [["high", "low", "mid"][i] for i in best]
    np.testing.assert_allclose(out[PROBABILITY_COLUMN], out[class_cols].max(axis=1))
    assert set(out[PREDICTION_COLUMN]) == {"high", "low", "mid"}


def test_multiclass_model_learned_something(
    multiclass: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = multiclass
    out = predict_frame(spec, booster, df)
    x2 = df["x2"]
    truth = np.select([x2 < 3.3, x2 < 6.6], ["low", "mid"], "high")
    assert (out[PREDICTION_COLUMN].to_numpy() == truth).mean() > 0.8


def test_multiclass_empty_input(
    multiclass: tuple[ModelSpec, xgboost.Booster, pd.DataFrame],
) -> None:
    spec, booster, df = multiclass
    out = predict_frame(spec, booster, df.iloc[:0])
    assert len(out) == 0


# --------------------------------------------------------------------------- regression


def test_regression_predictions() -> None:
    df = raw_frame()
    target = pd.Series(3.0 * df["x2"] + 1.0)
    pipeline = make_pipeline("regression", None)
    booster = train(pipeline, df, target, {"objective": "reg:squarederror", "eta": 0.5})
    spec = ModelSpec(pipeline=pipeline, name="charges")

    out = predict_frame(spec, booster, df)

    assert list(out.columns) == [PREDICTION_COLUMN]
    assert len(out) == len(df)
    assert out[PREDICTION_COLUMN].dtype == np.float64
    assert np.isfinite(out[PREDICTION_COLUMN]).all()
    np.testing.assert_allclose(out[PREDICTION_COLUMN], raw_predict(spec, booster, df), rtol=1e-6)
    # Five rounds at eta 0.5 get close to the linear target.
    assert np.corrcoef(out[PREDICTION_COLUMN], target)[0, 1] > 0.9


# --------------------------------------------------------------------------- feature names


def test_onehot_category_with_xgboost_reserved_characters() -> None:
    df = raw_frame().assign(plan=lambda d: np.where(d["x2"] < 5, "<18", "adult"))
    labels = pd.Series(np.where(df["x2"] < 5, "no", "yes"))
    pipeline = make_pipeline("binary", ["no", "yes"], encoding="onehot", vocab=["<18", "adult"])
    booster = train(pipeline, df, labels, {"objective": "binary:logistic"})
    out = predict_frame(ModelSpec(pipeline=pipeline, name="m"), booster, df)
    assert len(out) == len(df)


def test_conform_input_keeps_arrow_string_nulls_missing_for_mlflow() -> None:
    """Ray Data hands Arrow-backed batches over; MLflow would turn their nulls into "<NA>"."""
    import pyarrow as pa
    from mlflow.models.utils import _enforce_schema
    from mlflow.types import ColSpec, Schema

    from pipelines.model.spec import conform_input

    spec = ModelSpec(
        name="t",
        pipeline=FeaturePipeline(
            target="y", task="binary", classes=[0, 1],
            input_schema={"plan": "string", "x": "float"},
            numeric={"x": NumericStats(fill=0.0)}, boolean=[],
            categorical={"plan": CategoricalStats(fill="basic", vocab=["basic"])},
            datetime=[], datetime_parts=[], ratios=[], encoding="ordinal",
            normalize_categories=True, feature_names=["x", "plan"],
        ),
    )
    arrow = pd.DataFrame({"plan": ["basic", None], "x": [1, 2]})
    arrow = pa.Table.from_pandas(arrow).to_pandas(types_mapper=pd.ArrowDtype)
    schema = Schema([ColSpec("string", "plan", required=False),
                     ColSpec("double", "x", required=False)])
    enforced = _enforce_schema(conform_input(arrow, spec), schema)
    assert enforced["plan"].isna().tolist() == [False, True]
    assert enforced["x"].tolist() == [1.0, 2.0]


def test_conform_input_for_the_pipeline_keeps_model_columns_and_arrow_strings() -> None:
    """Batch inference calls the pipeline directly: the same casts, only the model's columns,
    strings left Arrow-backed (no MLflow check to protect them from)."""
    import pyarrow as pa

    from pipelines.model.spec import conform_input

    spec = ModelSpec(
        name="t",
        pipeline=FeaturePipeline(
            target="y", task="binary", classes=[0, 1],
            input_schema={"x": "float", "plan": "string", "at": "datetime"},
            numeric={"x": NumericStats(fill=0.0)}, boolean=[],
            categorical={"plan": CategoricalStats(fill="basic", vocab=["basic"])},
            datetime=["at"], datetime_parts=[], ratios=[], encoding="ordinal",
            normalize_categories=True, feature_names=["x", "plan"],
        ),
    )
    raw = pd.DataFrame({"id": [1, 2], "plan": ["basic", None], "x": [1, 2],
                        "at": ["2024-01-01", "2024-01-02 10:00"]})
    raw = pa.Table.from_pandas(raw).to_pandas(types_mapper=pd.ArrowDtype)
    out = conform_input(raw, spec, for_pipeline=True)
    assert list(out.columns) == ["x", "plan", "at"]
    assert out["x"].dtype == "float64" and out["x"].tolist() == [1.0, 2.0]
    assert isinstance(out["plan"].dtype, pd.ArrowDtype)
    assert pd.api.types.is_datetime64_any_dtype(out["at"])
    assert list(raw.columns) == ["id", "plan", "x", "at"]  # the input is left as it was


def test_the_model_and_batch_modules_do_not_import_mlflow() -> None:
    # Batch actors unpickle a LoadedModel; importing MLflow for it cost each actor 0.75 s of CPU
    # before its first batch. Only the pyfunc wrapper needs MLflow.
    import subprocess
    import sys

    code = ("import sys, pickle, pipelines.model.engine, pipelines.stages.batch; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:300]


def test_models_logged_before_the_wrapper_moved_still_unpickle() -> None:
    # Registered models pickled the wrapper as pipelines.model.RaypipeModel.
    import pickle

    from pipelines.model.pyfunc import RaypipeModel

    old_reference = pickle.dumps(RaypipeModel(), protocol=2).replace(  # names as text
        b"pipelines.model.pyfunc", b"pipelines.model")
    assert b"pipelines.model" in old_reference
    assert type(pickle.loads(old_reference)) is RaypipeModel
