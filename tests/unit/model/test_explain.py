"""Explanations: attributions per input column add up to the model's margin (no Ray, no MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost

from pipelines.config import DerivedFeature
from pipelines.families.base import BaseFamily, FitContext, Standardizer, TrainData
from pipelines.families.linear import LinearFamily, _Linear
from pipelines.families.registry import get_family
from pipelines.features.origins import attribution_matrix, feature_origins
from pipelines.features.pipeline import BinStats, _empty_frame, feature_name
from pipelines.model.engine import columns_to_frame, explain_columns
from pipelines.model.explain import (
    BIAS_COLUMN,
    ExplanationsUnsupportedError,
    check_explainable,
    explain_frame,
    explanation_columns,
    summary_columns,
)
from pipelines.model.spec import ModelSpec
from pipelines.serving.protocols import RequestError, explanations_body, parse_explain
from pipelines.stages.batch import score_batch
from tests.unit.model.helpers import SCHEMA, make_model, make_pipeline, random_columns


def _margin(model: Any, cols: dict[str, list[Any]]) -> np.ndarray:
    features = model.pipeline.transform(columns_to_frame(cols, model.spec)).to_numpy()
    booster = model.predictor.booster
    dm = xgboost.DMatrix(features, feature_names=booster.feature_names)
    return np.asarray(booster.predict(dm, output_margin=True), dtype=np.float64)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("encoding", ["ordinal", "onehot", "hashed"])
def test_xgboost_attributions_per_input_column_add_up_to_the_margin(task: str,
                                                                    encoding: str) -> None:
    model = make_model(task, encoding, seed=1)
    cols = random_columns(300, 7)
    explanation = explain_columns(model, cols)
    assert explanation.columns == list(SCHEMA)
    want = _margin(model, cols)
    if task == "multiclass":
        assert explanation.values.shape == (300, 3, len(SCHEMA))
        want = want.reshape(300, 3)
    else:
        assert explanation.values.shape == (300, len(SCHEMA))
    np.testing.assert_allclose(explanation.values.sum(axis=-1) + explanation.bias, want,
                               atol=1e-5)
    # The unused optional text column gets nothing; the columns the trees split on do.
    notes = explanation.columns.index("notes")
    assert not np.any(explanation.values[..., notes])
    assert np.abs(explanation.values).sum() > 0


def test_a_feature_of_several_columns_is_split_equally_and_the_rows_sum_to_one() -> None:
    pipe = make_pipeline("binary", "onehot").model_copy(update={
        "derived": [DerivedFeature(name="spend", expr="charges * per_month + tenure")],
        "bins": [BinStats(column="spend", edges=[0.0, 10.0])],
    })
    pipe = pipe.model_copy(update={
        "feature_names": list(pipe._all_features(_empty_frame(pipe.input_schema)).columns)})
    origins = feature_origins(pipe)
    assert origins["per_month"] == ("charges", "tenure")
    assert set(origins["spend"]) == {"charges", "tenure"}  # through the ratio it reads
    assert origins["spend_bin"] == origins["spend"]
    assert origins["plan=premium"] == ("plan",) and origins["signup_month"] == ("signup",)
    assert origins[feature_name("region=<east>")] == ("region",)  # XGBoost-safe name
    m = attribution_matrix(pipe)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    row = m[pipe.feature_names.index("per_month")]
    cols = list(pipe.input_schema)
    assert row[cols.index("charges")] == row[cols.index("tenure")] == 0.5


def _linear_model(task: str) -> tuple[Any, ModelSpec, pd.DataFrame]:
    pipe = make_pipeline(task, "onehot")
    spec = ModelSpec(pipeline=pipe, family="linear", name="unit")
    frame = columns_to_frame(random_columns(200, 3), spec)
    X = pipe.transform(frame).to_numpy()
    rng = np.random.default_rng(0)
    y = {"binary": lambda: (rng.random(200) < 0.4).astype(float),
         "multiclass": lambda: rng.integers(0, 3, 200).astype(float),
         "regression": lambda: rng.normal(size=200)}[task]()
    ctx = FitContext(task=task, num_classes=3 if task == "multiclass" else 2,
                     metric="rmse" if task == "regression" else "logloss", report=lambda m: None)
    data = TrainData(X, y, pipe.feature_names)
    return LinearFamily().fit({"C": 1.0}, data, data, ctx).model, spec, frame


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_linear_attributions_are_coefficient_times_value(task: str) -> None:
    predictor, spec, frame = _linear_model(task)
    explanation = explain_frame(spec, predictor, LinearFamily(), frame, conformed=True)
    scaled = predictor.scaler.apply(spec.pipeline.transform(frame).to_numpy())
    z = scaled @ np.atleast_2d(predictor.coef).T + predictor.intercept
    want = z.reshape(-1) if task != "multiclass" else z
    np.testing.assert_allclose(explanation.margin, want, atol=1e-9)
    # A column that is one feature: exactly its coefficient times its standardised value.
    j = spec.pipeline.feature_names.index("autopay")
    coef = np.atleast_2d(predictor.coef)[0, j]
    got = explanation.values[..., explanation.columns.index("autopay")]
    np.testing.assert_allclose(got if task != "multiclass" else got[:, 0], coef * scaled[:, j])
    if task == "binary":  # the margin is the log-odds the probability came from
        p = predictor.predict_raw(spec.pipeline.transform(frame).to_numpy())
        np.testing.assert_allclose(1 / (1 + np.exp(-explanation.margin)), p, atol=1e-12)


def test_the_mlp_and_a_family_without_attributions_are_refused_by_name() -> None:
    class Plain(BaseFamily):
        name = "plain"

    with pytest.raises(ExplanationsUnsupportedError, match="plain model family"):
        check_explainable(Plain())
    with pytest.raises(ExplanationsUnsupportedError, match="mlp model family"):
        check_explainable(get_family("mlp"))
    check_explainable(get_family("xgboost"))
    check_explainable(get_family("linear"))


def test_batch_scoring_adds_contribution_columns_that_sum_to_the_margin() -> None:
    model = make_model("multiclass", "onehot", seed=2)
    cols = random_columns(120, 5)
    batch = columns_to_frame(cols, model.spec)
    out, quarantined = score_batch(batch, model, keep=["tenure"], version_column="v",
                                   checked=True, explain=True)
    assert quarantined.empty and len(out) == 120
    contrib = [f"contribution_{c}" for c in SCHEMA]
    assert set(contrib) | {BIAS_COLUMN} <= set(out.columns)
    margin = _margin(model, cols).reshape(120, 3)
    classes = model.pipeline.classes
    predicted = np.array([classes.index(v) for v in out["prediction"]])
    total = out[contrib].sum(axis=1).to_numpy() + out[BIAS_COLUMN].to_numpy()
    np.testing.assert_allclose(total, margin[np.arange(120), predicted], atol=1e-5)


def test_the_explain_query_parameter_and_the_answer_shape() -> None:
    assert parse_explain(None) is False and parse_explain("TRUE") is True
    assert parse_explain("0") is False
    with pytest.raises(RequestError) as err:
        parse_explain("perhaps" * 100)
    assert err.value.status == 400 and len(err.value.body()["error"]) < 120
    model = make_model("multiclass", "ordinal")
    body = explanations_body(explain_columns(model, random_columns(2, 1)))
    assert body["explanation_scale"] == "class_score"
    row = body["explanations"][0]
    assert set(row["bias"]) == {"a", "b", "c"} and set(row["attributions"]["a"]) == set(SCHEMA)
    body = explanations_body(explain_columns(make_model("binary"), random_columns(3, 1)))
    assert body["explanation_scale"] == "log_odds" and len(body["explanations"]) == 3
    assert isinstance(body["explanations"][0]["bias"], float)


def test_summary_values_order_numbers_booleans_and_dates_and_leave_text_grey() -> None:
    model = make_model("binary")
    cols = random_columns(50, 4)
    frame = columns_to_frame(cols, model.spec)
    explanation = explain_columns(model, cols)
    attributions, values = summary_columns(explanation, frame, SCHEMA)
    assert set(attributions) == set(values) == set(SCHEMA)
    assert np.isnan(values["plan"]).all()
    np.testing.assert_array_equal(np.isnan(values["tenure"]), frame["tenure"].isna())
    assert set(values["autopay"][~np.isnan(values["autopay"])]) <= {0.0, 1.0}
    dates = values["signup"][~np.isnan(values["signup"])]
    assert dates.min() > 1.5e9  # seconds since 1970: the 2020s


def test_the_summary_plot_is_drawn(tmp_path: Path) -> None:
    from pipelines.stages.plots import attribution_summary_plot

    model = make_model("regression")
    cols = random_columns(80, 4)
    explanation = explain_columns(model, cols)
    attributions, values = summary_columns(explanation, columns_to_frame(cols, model.spec),
                                           SCHEMA)
    path = attribution_summary_plot(attributions, values, tmp_path / "a.png", "value")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(path.read_bytes()) > 5000


def test_explanation_columns_need_the_predicted_class_for_multiclass() -> None:
    explanation = explain_columns(make_model("multiclass"), random_columns(4, 1))
    with pytest.raises(ValueError, match="predicted class"):
        explanation_columns(explanation)
    flat = explanation_columns(explanation, np.array([0, 1, 2, 0]))
    assert flat[BIAS_COLUMN].shape == (4,)


def test_a_standardizer_fit_keeps_the_linear_bias_at_the_mean() -> None:
    # The attributions are centred: a row at the training mean of every feature gets ~0.
    X = np.random.default_rng(0).normal(size=(100, 3))
    s = Standardizer.fit(X)
    predictor = _Linear("regression", np.array([[1.0, -2.0, 0.5]]), np.array([0.3]), s)
    contribs = LinearFamily().contributions(predictor, np.asarray([s.mean]))
    np.testing.assert_allclose(contribs[0, :3], 0.0, atol=1e-12)
    assert contribs[0, 3] == pytest.approx(0.3)
