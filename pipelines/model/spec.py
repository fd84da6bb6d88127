"""The deployable model: fitted feature pipeline + a trained family model.

Batch inference, the Serve app and ``mlflow.pyfunc.load_model`` (through
:class:`pipelines.model.pyfunc.RaypipeModel`) all predict through :func:`predict_frame`, so the
same raw rows give the same predictions everywhere. This module does not import the wrapper:
the wrapper imports it.

Imported inside the MLflow model at load time: no Ray import at module level. No MLflow import
either: batch actors unpickle a model spec and should not pay MLflow's 0.75 s import for it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.families import Predictor
from pipelines.features.pipeline import FeaturePipeline

__all__ = [
    "PREDICTION_COLUMN",
    "PROBABILITY_COLUMN",
    "ModelSpec",
    "conform_input",
    "load_spec",
    "predict_frame",
]

logger = logging.getLogger(__name__)

PREDICTION_COLUMN = "prediction"
PROBABILITY_COLUMN = "probability"
SPEC_ARTIFACT = "model_spec"
MODEL_ARTIFACT = "model_dir"


class ModelSpec(BaseModel):
    """Everything besides the model weights that prediction needs, stored as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: FeaturePipeline
    family: str = "xgboost"
    threshold: float = 0.5
    name: str
    metrics: dict[str, float] = {}


def load_spec(path: str | Path) -> ModelSpec:
    return ModelSpec.model_validate_json(Path(path).read_text())


def conform_input(df: pd.DataFrame, spec: ModelSpec, *,
                  for_pipeline: bool = False) -> pd.DataFrame:
    """Cast raw rows to the types of the model's input schema: the one cast of raw input.

    MLflow refuses int64 where the signature says double ("cannot safely convert"); raw files
    often hold whole numbers as int64, so batch and online inference convert them first.
    MLflow also turns a missing value of an Arrow-backed string column (as Ray Data hands
    batches over) into the literal text "<NA>"; plain objects with None keep it missing.

    ``for_pipeline``: the rows go straight to the feature pipeline (batch inference), with no
    MLflow schema check in between. Then only the model's input columns are kept (selected,
    not copied: copy-on-write) and strings stay as they are, Arrow-backed: converting them to
    Python objects would only cost time on that path.
    """
    schema = spec.pipeline.input_schema
    out = df[[c for c in schema if c in df.columns]] if for_pipeline else df.copy()
    for col, kind in schema.items():
        if col not in out.columns:
            continue
        if kind == "float":
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
        elif kind == "datetime":
            out[col] = pd.to_datetime(out[col], errors="coerce", format="mixed")
        elif kind == "string" and not for_pipeline:
            values = out[col].astype(object)
            out[col] = values.where(out[col].notna(), None)
    return out


def predict_frame(spec: ModelSpec, predictor: Predictor, df: pd.DataFrame) -> pd.DataFrame:
    """Predict raw rows: one output row per input row, in input order.

    Binary: ``prediction`` (the label) and ``probability`` (of the positive, second class).
    Multiclass: ``prediction``, ``probability`` (of the predicted class) and one
    ``probability_<class>`` column per class. Regression: ``prediction``.
    """
    pipe = spec.pipeline
    features = pipe.transform(df)
    raw = predictor.predict_raw(features.to_numpy(dtype=np.float64))
    out = pd.DataFrame(index=df.index)
    if pipe.task == "regression":
        out[PREDICTION_COLUMN] = raw.astype("float64")
    elif pipe.task == "binary":
        positive = raw.astype("float64")
        out[PREDICTION_COLUMN] = pipe.decode_target((positive >= spec.threshold).astype(int))
        out[PROBABILITY_COLUMN] = positive
    else:
        assert pipe.classes is not None
        proba = raw.reshape(len(df), len(pipe.classes)).astype("float64")
        best = proba.argmax(axis=1)
        out[PREDICTION_COLUMN] = pipe.decode_target(best)
        out[PROBABILITY_COLUMN] = proba[np.arange(len(df)), best]
        for i, c in enumerate(pipe.classes):
            out[f"{PROBABILITY_COLUMN}_{c}"] = proba[:, i]
    return out.reset_index(drop=True)


def spec_to_json(spec: ModelSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), indent=2)

