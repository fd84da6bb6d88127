"""The monitoring reference stored with every trained model: what "normal" input looks like.

At registration the runner calls :func:`log_reference`: a seeded sample of the training split's
raw rows is scored by the new model, and the sample (Parquet) plus the profile of every
monitored column and of the prediction (JSON) become artifacts of the training run under
``monitoring/``. `raypipe monitor` finds them from the model URI alone: the registered version
names its run.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.config import MonitorConfig, RequestLogConfig
from pipelines.features.pipeline import FeaturePipeline
from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN, ModelSpec, conform_input
from pipelines.monitoring.drift import (
    CategoricalProfile,
    NumericProfile,
    categorical_profile,
    numeric_profile,
)

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = [
    "REFERENCE_DIR",
    "Reference",
    "build_reference",
    "load_reference",
    "log_reference",
    "monitored_columns",
    "prediction_column",
]

logger = logging.getLogger(__name__)

REFERENCE_DIR = "monitoring"
_JSON = "reference.json"
_SAMPLE = "reference_sample.parquet"


class Reference(BaseModel):
    """Profiles of the training sample: one per monitored column, one of the prediction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = 1
    task: str
    target: str
    rows: int
    normalize_categories: bool
    features: dict[str, NumericProfile | CategoricalProfile]
    prediction_column: str
    prediction: NumericProfile | CategoricalProfile
    classes: list[bool | int | float | str] | None = None


def monitored_columns(pipeline: FeaturePipeline, columns: list[str] | None,
                      log: RequestLogConfig | None = None) -> dict[str, str]:
    """Column -> kind of the columns to monitor (default: every model input but datetimes and
    those the request log ``log`` keeps out)."""
    schema = pipeline.input_schema
    if columns is None:
        return {c: k for c, k in schema.items()
                if k != "datetime" and (log is None or log.logs_column(c))}
    unknown = [c for c in columns if c not in schema]
    if unknown:
        raise ValueError(f"monitor.columns {unknown} are not inputs of the model; its inputs: "
                         f"{sorted(schema)}")
    return {c: schema[c] for c in columns}


def prediction_column(task: str) -> str:
    """What prediction drift is measured on: the positive-class probability (binary), the
    predicted label (multiclass) or the predicted value (regression)."""
    return PROBABILITY_COLUMN if task == "binary" else PREDICTION_COLUMN


def _profile(values: pd.Series, kind: str, bins: int,
             normalize: bool) -> NumericProfile | CategoricalProfile:
    if kind == "float":
        return numeric_profile(values, bins)
    return categorical_profile(values, normalize)


def build_reference(sample: pd.DataFrame, pipeline: FeaturePipeline,
                    cfg: MonitorConfig) -> Reference:
    """Profile a scored sample (raw input columns + the model's prediction columns)."""
    pred_col = prediction_column(pipeline.task)
    if pred_col not in sample.columns:
        raise ValueError(f"the reference sample lacks the prediction column {pred_col!r}")
    features = {
        c: _profile(sample[c] if c in sample.columns else pd.Series([None] * len(sample)),
                    kind, cfg.bins, pipeline.normalize_categories)
        for c, kind in monitored_columns(pipeline, cfg.columns, cfg.request_log).items()
    }
    pred_kind = "string" if pipeline.task == "multiclass" else "float"
    return Reference(
        task=pipeline.task, target=pipeline.target, rows=len(sample),
        normalize_categories=pipeline.normalize_categories, features=features,
        prediction_column=pred_col,
        prediction=_profile(sample[pred_col], pred_kind, cfg.bins, normalize=False),
        classes=pipeline.classes,
    )


def _sample(train_raw: Dataset, rows: int, seed: int) -> pd.DataFrame:
    total = train_raw.count()
    if total <= rows:
        return train_raw.to_pandas()
    # A little over the share needed, then cut: random_sample is Bernoulli per row.
    fraction = min(1.0, 1.2 * rows / total)
    return train_raw.random_sample(fraction, seed=seed).limit(rows).to_pandas()


def log_reference(train_raw: Dataset, spec: ModelSpec, model_dir: Path,
                  cfg: MonitorConfig, seed: int = 0) -> Reference:
    """Score a seeded sample of the training rows and log it with its profile to the active
    MLflow run (``monitoring/reference.json`` and ``monitoring/reference_sample.parquet``)."""
    import mlflow

    from pipelines.families import load_predictor
    from pipelines.model.spec import predict_frame

    sample = _sample(train_raw, cfg.reference_rows, seed).reset_index(drop=True)
    predictor = load_predictor(model_dir)
    inputs = [c for c in spec.pipeline.input_schema if c in sample.columns]
    predictions = predict_frame(spec, predictor, conform_input(sample[inputs], spec))
    scored = pd.concat([sample, predictions], axis=1)
    reference = build_reference(scored, spec.pipeline, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / _SAMPLE
        scored.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), REFERENCE_DIR)
    mlflow.log_text(reference.model_dump_json(indent=1), f"{REFERENCE_DIR}/{_JSON}")
    logger.info("monitoring reference: %d training rows, %d columns", len(scored),
                len(reference.features))
    return reference


def load_reference(run_id: str) -> tuple[Reference, dict[str, Any]]:
    """The reference of a training run, and the run's metrics (MLflow must point at its store).

    Raises:
        FileNotFoundError: the run has no monitoring reference (trained before it existed).
    """
    import mlflow
    from mlflow import MlflowClient

    try:
        text = mlflow.artifacts.load_text(
            mlflow.get_run(run_id).info.artifact_uri + f"/{REFERENCE_DIR}/{_JSON}")
    except Exception as err:
        raise FileNotFoundError(
            f"run {run_id} has no monitoring reference ({REFERENCE_DIR}/{_JSON}); retrain the "
            f"model with this version of raypipe: {err}") from None
    metrics = dict(MlflowClient().get_run(run_id).data.metrics)
    return Reference.model_validate_json(text), metrics
