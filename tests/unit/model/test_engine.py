"""The compiled fast path and the serving engine, against the pandas pipeline (no Ray, no MLflow).

The fast path must give exactly the features and predictions of ``FeaturePipeline.transform`` +
``predict_frame``; hypothesis generates the rows, missing values and odd spellings included.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.features.pipeline import NumericStats
from pipelines.model.engine import (
    LoadedModel,
    _fast_path_problem,
    _fastest_predictor,
    _InplaceXGBoost,
    columns_to_frame,
    frame_to_columns,
    output_names,
    parse_model_uri,
    predict_columns,
    sample_columns,
)
from pipelines.model.fastpath import CompiledPipeline
from pipelines.model.spec import ModelSpec, predict_frame
from tests.unit.model.helpers import SCHEMA, make_model, make_pipeline, random_columns


def reference(model: LoadedModel, cols: dict[str, list[Any]]) -> pd.DataFrame:
    return predict_frame(model.spec, model.predictor, columns_to_frame(cols, model.spec))


def assert_same(outputs: dict[str, np.ndarray], expected: pd.DataFrame) -> None:
    assert list(outputs) == list(expected.columns)
    for c in expected.columns:
        want = expected[c].to_numpy()
        if want.dtype.kind in "fiub":
            np.testing.assert_array_equal(outputs[c].astype("float64"), want.astype("float64"))
        else:
            assert list(outputs[c]) == list(want)


# --------------------------------------------------------------------------- fast path


@pytest.mark.parametrize("encoding", ["ordinal", "onehot"])
def test_compiled_features_equal_the_pandas_pipeline(encoding: str) -> None:
    pipe = make_pipeline(encoding=encoding)
    cols = random_columns(500, 3)
    spec = ModelSpec(pipeline=pipe, name="unit")
    compiled = CompiledPipeline(pipe)
    assert compiled.accepts(cols)
    got = compiled.transform(cols, 500)
    want = pipe.transform(columns_to_frame(cols, spec)).to_numpy()
    assert got.shape == want.shape == (500, len(pipe.feature_names))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_predictions_equal_predict_frame_for_every_task(task: str) -> None:
    model = make_model(task)
    cols = random_columns(300, 9)
    outputs = predict_columns(model, cols, 300)
    assert list(outputs) == output_names(model.spec)
    assert_same(outputs, reference(model, cols))


_float = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64),
                   st.integers(-10**6, 10**6), st.sampled_from([0.0, -0.0, 72.0, 1e-300]))
_text = st.one_of(st.none(), st.sampled_from(["basic", " BASIC ", "Premium", "gold", "", " ",
                                              "north", "<east>", "SOUTH  ", "é", "İstanbul"]),
                  st.text(max_size=6))
_when = st.one_of(st.none(), st.datetimes(min_value=datetime(1700, 1, 1),
                                          max_value=datetime(2200, 12, 31)),
                  st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1),
                               timezones=st.just(UTC)))
_row = st.fixed_dictionaries({"tenure": _float, "charges": _float,
                              "autopay": st.one_of(st.none(), st.booleans()),
                              "plan": _text, "region": _text, "signup": _when,
                              "notes": st.one_of(st.none(), st.text(max_size=3))})
_MODEL = make_model("binary", "onehot", seed=1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, min_size=1, max_size=8))
def test_generated_rows_predict_exactly_like_the_pyfunc_path(rows: list[dict[str, Any]]) -> None:
    cols = {c: [r[c] for r in rows] for c in SCHEMA}
    try:
        expected = reference(_MODEL, cols)
    except Exception as err:  # e.g. XGBoost refusing an infinite ratio: both paths refuse
        with pytest.raises(type(err)):
            predict_columns(_MODEL, cols, len(rows))
        return
    assert_same(predict_columns(_MODEL, cols, len(rows)), expected)


def test_values_outside_the_exact_subset_take_the_pandas_path() -> None:
    compiled = CompiledPipeline(make_pipeline())
    base = random_columns(2, 0)
    assert compiled.accepts(base)
    for col, value in [("plan", "é"), ("plan", 3), ("signup", datetime(2021, 1, 1, tzinfo=UTC)),
                       ("tenure", float("inf")), ("autopay", 1), ("tenure", "3")]:
        assert not compiled.accepts({**base, col: [value, None]}), (col, value)
    assert not compiled.accepts({k: v for k, v in base.items() if k != "plan"})
    assert compiled.accepts({k: v for k, v in base.items() if k != "notes"})  # optional


def test_self_check_accepts_an_exact_fast_path_and_rejects_a_wrong_one() -> None:
    model = make_model("multiclass")
    assert _fast_path_problem(model, CompiledPipeline(model.pipeline)) is None
    wrong = model.pipeline.model_copy(update={
        "numeric": {**model.pipeline.numeric, "charges": NumericStats(fill=-99.0)}})
    problem = _fast_path_problem(model, CompiledPipeline(wrong))
    assert problem is not None and "differs" in problem


def test_sample_columns_cover_missing_values_and_spellings() -> None:
    cols, n = sample_columns(make_pipeline())
    assert n == 12 and set(cols) == set(SCHEMA)
    for values in cols.values():
        assert len(values) == n and values[0] is None
    assert any(isinstance(v, str) and v != v.strip() for v in cols["plan"])
    assert "never-seen" in cols["plan"]


# --------------------------------------------------------------------------- conversions


def test_frame_to_columns_turns_missing_values_into_none() -> None:
    frame = pd.DataFrame({
        "tenure": [1, None, 3.5], "autopay": [True, None, False], "plan": ["a", None, "b"],
        "signup": ["2021-01-02T03:04:05", None, "2022-02-03"],
    })
    cols = frame_to_columns(frame, {"tenure": "float", "autopay": "bool", "plan": "string",
                                    "signup": "datetime"})
    assert cols["tenure"] == [1.0, None, 3.5]
    assert cols["autopay"] == [True, None, False]
    assert cols["plan"] == ["a", None, "b"]
    assert cols["signup"] == [datetime(2021, 1, 2, 3, 4, 5), None, datetime(2022, 2, 3)]


@pytest.mark.parametrize(("uri", "parsed"), [
    ("models:/churn@champion", ("churn", None, "champion")),
    ("models:/churn/3", ("churn", "3", None)),
    ("models:/m-abc123", ("m-abc123", None, None)),
    ("runs:/abc/model", (None, None, None)),
])
def test_parse_model_uri(uri: str, parsed: tuple[Any, ...]) -> None:
    assert parse_model_uri(uri) == parsed


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_xgboost_predicts_in_place_with_identical_numbers(task: str) -> None:
    model = make_model(task)
    fast = _fastest_predictor(model.predictor, model.spec)
    assert isinstance(fast, _InplaceXGBoost)
    features = model.compiled.transform(random_columns(200, 8), 200)  # type: ignore[union-attr]
    np.testing.assert_array_equal(fast.predict_raw(features), model.predictor.predict_raw(features))

    class Other:
        def predict_raw(self, x: np.ndarray) -> np.ndarray:
            return x[:, 0]

    other = Other()
    assert _fastest_predictor(other, model.spec) is other
