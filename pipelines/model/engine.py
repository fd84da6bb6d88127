"""The model behind the Serve app and batch inference: loading by registry URI, and prediction.

A :class:`LoadedModel` is one registered model version, resolved to a concrete version (an alias
is looked up once, so the version in every answer is the version that scored it). Predictions go
through :func:`predict_columns`, which takes validated raw rows by column and uses the compiled
fast path (:mod:`pipelines.model.fastpath`) when it reproduces the pandas pipeline exactly,
else the pyfunc model's own :func:`pipelines.model.predict_frame`.

No Ray import at module level; everything here runs in a Serve replica or a batch actor.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config.names import parse_model_uri
from pipelines.features.pipeline import FeaturePipeline
from pipelines.model.explain import Explanation, explain_frame
from pipelines.model.fastpath import Columns, CompiledPipeline
from pipelines.model.spec import (
    PREDICTION_COLUMN,
    PROBABILITY_COLUMN,
    ModelSpec,
    conform_input,
    predict_frame,
)

__all__ = [
    "LoadedModel",
    "ModelRef",
    "Outputs",
    "complete_columns",
    "explain_columns",
    "family_of",
    "frame_to_columns",
    "load_model",
    "load_ref",
    "output_names",
    "parse_model_uri",
    "predict_columns",
    "resolve_model",
]

logger = logging.getLogger(__name__)

_FLOAT32_MAX = float(np.finfo(np.float32).max)

Outputs = dict[str, np.ndarray]
"""Predictions by output column (``prediction``, ``probability``, ``probability_<class>``)."""


@dataclass(frozen=True)
class ModelRef:
    """Where a model URI points in the registry."""

    name: str
    version: str
    alias: str | None
    uri: str
    """A URI of exactly this version (``models:/name/version``), safe against alias moves."""
    run_id: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """One model version, loaded once per replica or batch actor."""

    ref: ModelRef
    spec: ModelSpec
    predictor: Any
    """The family's predictor (XGBoost: predicting in place, when that gives the same numbers)."""
    compiled: CompiledPipeline | None
    metrics: dict[str, float] = field(default_factory=dict)
    input_schema: Any = None
    """The MLflow signature's input schema (what MLflow's request parsers cast to)."""
    loaded_at: float = field(default_factory=time.time)
    family: Any = None
    """The model family that saved it (explanations ask it for attributions)."""

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def pipeline(self) -> FeaturePipeline:
        return self.spec.pipeline


def resolve_model(model_uri: str) -> ModelRef:
    """Look ``model_uri`` up in the registry of the current MLflow tracking URI.

    Raises:
        pipelines.config.ModelUriError: a ``models:/`` URI outside the naming rules.
    """
    from mlflow import MlflowClient

    name, version, alias = parse_model_uri(model_uri)
    if name is None:
        return ModelRef(name=model_uri, version="unregistered", alias=None, uri=model_uri)
    if version is None and alias is None:
        # MLflow 3's logged-model URI (models:/m-<id>): no registry entry, nothing to follow.
        return ModelRef(name=name, version=name, alias=None, uri=model_uri)
    client = MlflowClient()
    mv = (client.get_model_version_by_alias(name, alias) if alias is not None
          else client.get_model_version(name, str(version)))
    return ModelRef(name=name, version=str(mv.version), alias=alias,
                    uri=f"models:/{name}/{mv.version}", run_id=mv.run_id)


def _run_metrics(run_id: str | None) -> dict[str, float]:
    from mlflow import MlflowClient

    if not run_id:
        return {}
    try:
        return dict(sorted(MlflowClient().get_run(run_id).data.metrics.items()))
    except Exception as err:  # metrics are informative; a model without them still serves
        logger.warning("cannot read the metrics of run %s: %s", run_id, err)
        return {}


def load_model(model_uri: str, *, check_fast_path: bool = True) -> LoadedModel:
    """Resolve and load ``model_uri`` (an alias is pinned to its current version)."""
    return load_ref(resolve_model(model_uri), check_fast_path=check_fast_path)


def load_ref(ref: ModelRef, *, check_fast_path: bool = True) -> LoadedModel:
    """Load the model version ``ref`` names.

    The compiled fast path is used only when it agrees exactly with the pandas path on sample
    rows built from the fitted statistics; otherwise every request takes the pandas path.
    """
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(ref.uri)
    wrapper = pyfunc.unwrap_python_model()
    predictor = _fastest_predictor(wrapper.predictor, wrapper.spec)
    model = LoadedModel(ref=ref, spec=wrapper.spec, predictor=predictor, compiled=None,
                        metrics=_run_metrics(ref.run_id),
                        input_schema=pyfunc.metadata.get_input_schema(),
                        family=getattr(wrapper, "family", None))
    if not check_fast_path:
        return model
    compiled = CompiledPipeline(model.spec.pipeline)
    problem = _fast_path_problem(model, compiled)
    if problem:
        logger.warning("model %s v%s: compiled fast path disabled (%s)", ref.name, ref.version,
                       problem)
        return model
    return replace(model, compiled=compiled)


# --------------------------------------------------------------------------- prediction


def output_names(spec: ModelSpec) -> list[str]:
    """The output columns of a model, in the order predict_frame gives them."""
    pipe = spec.pipeline
    if pipe.task == "regression":
        return [PREDICTION_COLUMN]
    names = [PREDICTION_COLUMN, PROBABILITY_COLUMN]
    if pipe.task == "multiclass":
        names += [f"{PROBABILITY_COLUMN}_{c}" for c in pipe.classes or []]
    return names


def predict_columns(model: LoadedModel, columns: Columns, n: int) -> Outputs:
    """Predict ``n`` validated raw rows given by column; one output row per input row."""
    if n == 0:
        return {name: np.empty(0) for name in output_names(model.spec)}
    if model.compiled is not None and model.compiled.accepts(columns):
        return _fast_predict(model, model.compiled, columns, n)
    return _pandas_predict(model, columns)


def explain_columns(model: LoadedModel, columns: Columns) -> Explanation:
    """Attributions of validated raw rows to the input columns (see :mod:`.explain`).

    Raises:
        ExplanationsUnsupportedError: the model's family gives no exact attributions.
    """
    return explain_frame(model.spec, model.predictor, family_of(model),
                         columns_to_frame(columns, model.spec), conformed=True)


def family_of(model: LoadedModel) -> Any:
    """The family that saved ``model``."""
    from pipelines.families.registry import get_family

    # A model loaded by a wrapper older than explanations does not hold its family.
    return model.family if model.family is not None else get_family(model.spec.family)


def _fast_predict(model: LoadedModel, compiled: CompiledPipeline, columns: Columns,
                  n: int) -> Outputs:
    # Mirrors the tail of pipelines.model.predict_frame on the compiled feature matrix.
    pipe, spec = model.pipeline, model.spec
    features = compiled.transform(columns, n)
    with np.errstate(invalid="ignore"):
        too_large = (np.abs(features) > _FLOAT32_MAX).any()
    if too_large:
        # Features beyond float32 (an extreme value or ratio) are refused by XGBoost's DMatrix
        # but not by inplace_predict; the pandas path keeps the pyfunc model's behaviour.
        return _pandas_predict(model, columns)
    raw = np.asarray(_raw_predict(model.predictor, features))
    if pipe.task == "regression":
        return {PREDICTION_COLUMN: raw.astype("float64")}
    if pipe.task == "binary":
        positive = raw.astype("float64")
        labels = pipe.decode_target((positive >= spec.threshold).astype(int))
        return {PREDICTION_COLUMN: _label_array(labels), PROBABILITY_COLUMN: positive}
    classes = pipe.classes or []
    proba = raw.reshape(n, len(classes)).astype("float64")
    best = proba.argmax(axis=1)
    out = {PREDICTION_COLUMN: _label_array(pipe.decode_target(best)),
           PROBABILITY_COLUMN: proba[np.arange(n), best]}
    for i, c in enumerate(classes):
        out[f"{PROBABILITY_COLUMN}_{c}"] = proba[:, i]
    return out


def _raw_predict(predictor: Any, features: np.ndarray) -> np.ndarray:
    return np.asarray(predictor.predict_raw(features))


class _InplaceXGBoost:
    """An XGBoost booster that predicts in place, without building a DMatrix.

    A DMatrix costs about as much as the trees themselves (more on a few rows);
    ``inplace_predict`` gives the same numbers, which :func:`_fastest_predictor` checks.
    """

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict_raw(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(features, validate_features=False))


def _fastest_predictor(predictor: Any, spec: ModelSpec) -> Any:
    """``predictor``, or its in-place twin when that gives identical output on sample rows."""
    booster = getattr(predictor, "booster", None)
    if booster is None or not hasattr(booster, "inplace_predict"):
        return predictor
    try:
        cols, _ = sample_columns(spec.pipeline)
        features = spec.pipeline.transform(columns_to_frame(cols, spec)).to_numpy(np.float64)
        inplace = _InplaceXGBoost(booster)
        if np.array_equal(np.asarray(predictor.predict_raw(features)),
                          inplace.predict_raw(features), equal_nan=True):
            return inplace
    except Exception as err:  # any doubt: keep the family's own predictor
        logger.warning("in-place prediction disabled: %s", err)
    return predictor


def columns_to_frame(columns: Columns, spec: ModelSpec) -> pd.DataFrame:
    """Raw rows as the pandas frame the pyfunc model receives, cast by conform_input."""
    schema = spec.pipeline.input_schema
    frame = pd.DataFrame({c: pd.Series(columns[c], dtype=object) for c in schema if c in columns})
    return conform_input(frame, spec)


def _pandas_predict(model: LoadedModel, columns: Columns) -> Outputs:
    frame = predict_frame(model.spec, model.predictor, columns_to_frame(columns, model.spec))
    out: Outputs = {}
    for c in frame.columns:
        values = frame[c]
        out[c] = (_label_array(values.tolist()) if c == PREDICTION_COLUMN
                  and model.pipeline.task != "regression" else values.to_numpy(dtype="float64"))
    return out


def _label_array(labels: list[Any]) -> np.ndarray:
    if all(isinstance(v, bool | np.bool_) for v in labels):
        return np.asarray(labels, dtype=bool)
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=np.int64)
    if all(isinstance(v, float | int | np.number) for v in labels):
        return np.asarray(labels, dtype=np.float64)
    return np.asarray([str(v) for v in labels], dtype=object)


def complete_columns(columns: Columns, pipeline: FeaturePipeline, n: int) -> Columns:
    """Every input column present: optional columns left out become all-missing."""
    for c in pipeline.input_schema:
        if c not in columns:
            columns[c] = [None] * n
    return columns


def frame_to_columns(frame: pd.DataFrame, schema: dict[str, str]) -> Columns:
    """A validated frame as Python values by column (missing values as None)."""
    out: Columns = {}
    for c, kind in schema.items():
        if c not in frame.columns:
            continue
        s = frame[c]
        mask = s.isna().to_numpy()
        if kind == "float":
            values: list[Any] = pd.to_numeric(s, errors="coerce").astype("float64").tolist()
        elif kind == "datetime":
            values = [None if pd.isna(t) else t.to_pydatetime() for t in
                      pd.to_datetime(s, errors="coerce", format="mixed")]
        elif kind == "bool":
            values = [bool(v) if not m else None for v, m in zip(s.tolist(), mask, strict=True)]
        else:
            values = s.astype(object).tolist()
        out[c] = [None if m else v for v, m in zip(values, mask, strict=True)]
    return out


# --------------------------------------------------------------------------- self-check


def sample_columns(pipeline: FeaturePipeline) -> tuple[Columns, int]:
    """Rows that exercise every fitted statistic: missing values, bounds, spellings, dates."""
    n = 12
    cols: Columns = {}
    base = datetime(2023, 1, 2, 3, 4, 5)
    for i, (c, kind) in enumerate(pipeline.input_schema.items()):
        if kind == "float":
            st = pipeline.numeric.get(c)
            lo = st.lower if st and st.lower is not None else -1.0
            hi = st.upper if st and st.upper is not None else 1.0
            fill = st.fill if st else 0.0
            vals: list[Any] = [None, fill, lo - 1.0, hi + 1.0, 0.0, 1.0, lo, hi,
                               fill * 1.5, -0.0, 2.5, 1e6]
        elif kind == "bool":
            vals = [None, True, False] * 4
        elif kind == "datetime":
            vals = [None] + [base + timedelta(days=37 * k + i, hours=5 * k) for k in range(n - 1)]
        else:
            cst = pipeline.categorical.get(c)
            vocab = list(cst.vocab) if cst else ["a"]
            spelled = [f"  {v.upper()} " for v in vocab] + vocab + ["never-seen", ""]
            vals = [None] + [spelled[k % len(spelled)] for k in range(n - 1)]
        cols[c] = vals[:n]
    return cols, n


def _fast_path_problem(model: LoadedModel, compiled: CompiledPipeline) -> str | None:
    try:
        cols, n = sample_columns(model.pipeline)
        if not compiled.accepts(cols):
            return "sample rows not accepted"
        expected = predict_frame(model.spec, model.predictor, columns_to_frame(cols, model.spec))
        got = _fast_predict(model, compiled, cols, n)
        for c in expected.columns:
            want = expected[c].to_numpy()
            have = got[c]
            same = (np.array_equal(want.astype("float64"), have.astype("float64"), equal_nan=True)
                    if want.dtype.kind in "fiub" else list(want) == list(have))
            if not same:
                return f"output {c!r} differs from the pandas pipeline"
    except Exception as err:  # any failure here just means: use the pandas path
        return f"{type(err).__name__}: {err}"
    return None
