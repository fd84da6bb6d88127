"""Batch inference: a Ray Data actor pool applies the registered pyfunc model to raw rows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from pipelines.config import BatchConfig
from pipelines.model import conform_input

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["PyfuncPredictor", "predict_dataset"]

logger = logging.getLogger(__name__)


class PyfuncPredictor:
    """Loads the MLflow model once per actor; appends its predictions to each batch."""

    def __init__(self, model_uri: str, tracking_uri: str | None) -> None:
        import mlflow

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        self.model = mlflow.pyfunc.load_model(model_uri)
        self.spec = self.model.unwrap_python_model().spec

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        preds = self.model.predict(conform_input(batch, self.spec))
        out = batch.reset_index(drop=True)
        for col in preds.columns:
            out[col] = preds[col].to_numpy()
        return out


def predict_dataset(
    ds: Dataset, *, model_uri: str, tracking_uri: str | None, cfg: BatchConfig
) -> Dataset:
    """Predict every row of ``ds``: the output has the input columns plus predictions.

    Actors take fractional CPUs (``num_cpus_per_actor``) so that on a small machine the read
    tasks feeding them still get scheduled.
    """
    import ray.data

    return ds.map_batches(
        PyfuncPredictor,
        fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri},
        batch_format="pandas",
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=cfg.concurrency),
        num_cpus=cfg.num_cpus_per_actor,
    )
