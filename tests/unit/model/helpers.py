"""Shared test data for the model and serving tests: a hand-built feature pipeline over a small
schema, random raw rows with missing values and odd spellings, and a tiny XGBoost model on them.

No Ray, no MLflow: the model is a :class:`~pipelines.model.engine.LoadedModel` built in process.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import xgboost

from pipelines.config import RatioFeature
from pipelines.families.xgb import _Predictor as XGBPredictor
from pipelines.features.pipeline import CategoricalStats, FeaturePipeline, NumericStats, _empty_frame
from pipelines.model.engine import LoadedModel, ModelRef, columns_to_frame
from pipelines.model.fastpath import CompiledPipeline
from pipelines.model.spec import ModelSpec

__all__ = ["PLANS", "REGIONS", "SCHEMA", "make_model", "make_pipeline", "random_columns"]

SCHEMA = {"tenure": "float", "charges": "float", "autopay": "bool", "plan": "string",
          "region": "string", "signup": "datetime", "notes": "string"}
PLANS = ["basic", "premium", "standard"]
REGIONS = ["north", "south", "<east>"]


def make_pipeline(task: str = "binary", encoding: str = "ordinal") -> FeaturePipeline:
    classes: list[Any] | None = {"binary": [0, 1], "multiclass": ["a", "b", "c"],
                                 "regression": None}[task]
    pipe = FeaturePipeline(
        target="y", task=task, classes=classes,  # type: ignore[arg-type]
        input_schema=SCHEMA,  # type: ignore[arg-type]
        optional_columns=["notes"],
        numeric={"tenure": NumericStats(fill=12.0, lower=0.0, upper=72.0),
                 "charges": NumericStats(fill=5.5)},
        boolean=["autopay"],
        categorical={"plan": CategoricalStats(fill="basic", vocab=PLANS),
                     "region": CategoricalStats(fill="__missing__", vocab=[*REGIONS, "__missing__"])},
        datetime=["signup"], datetime_parts=["year", "month", "day", "dayofweek", "hour"],
        ratios=[RatioFeature(name="per_month", numerator="charges", denominator="tenure")],
        encoding=encoding,  # type: ignore[arg-type]
        normalize_categories=True, feature_names=[],
    )
    names = list(pipe._all_features(_empty_frame(pipe.input_schema)).columns)
    return pipe.model_copy(update={"feature_names": names})


def random_columns(n: int, seed: int) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    t0 = datetime(2020, 1, 1)

    def maybe(values: list[Any], rate: float = 0.15) -> list[Any]:
        return [None if rng.random() < rate else v for v in values]

    return {
        "tenure": maybe([float(v) for v in rng.normal(30, 40, n)]),
        "charges": maybe([float(v) for v in rng.uniform(-10, 200, n)]),
        "autopay": maybe([bool(v) for v in rng.random(n) < 0.5]),
        "plan": maybe([str(rng.choice([" BASIC", "premium ", "Standard", "gold"])) for _ in range(n)]),
        "region": maybe([str(rng.choice(["north", "SOUTH", " <east> ", "west"])) for _ in range(n)]),
        "signup": maybe([t0 + timedelta(hours=int(h)) for h in rng.integers(0, 40_000, n)]),
        "notes": [None] * n,
    }


def make_model(task: str = "binary", encoding: str = "ordinal", seed: int = 0) -> LoadedModel:
    pipe = make_pipeline(task, encoding)
    cols = random_columns(400, seed)
    spec = ModelSpec(pipeline=pipe, name="unit")
    X = pipe.transform(columns_to_frame(cols, spec)).to_numpy()
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {"max_depth": 3, "nthread": 1}
    if task == "binary":
        y = (rng.random(400) < 0.4).astype(float)
        params["objective"] = "binary:logistic"
    elif task == "multiclass":
        y = rng.integers(0, 3, 400).astype(float)
        params |= {"objective": "multi:softprob", "num_class": 3}
    else:
        y = rng.normal(size=400)
        params["objective"] = "reg:squarederror"
    booster = xgboost.train(params, xgboost.DMatrix(X, label=y, feature_names=pipe.feature_names),
                            num_boost_round=15)
    ref = ModelRef(name="unit", version="1", alias="champion", uri="models:/unit/1")
    return LoadedModel(ref=ref, spec=spec, predictor=XGBPredictor(booster),
                       compiled=CompiledPipeline(pipe))
