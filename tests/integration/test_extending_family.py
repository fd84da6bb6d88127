"""A model family added from outside the package runs a whole pipeline: sweep, register, serve
through MLflow, batch predictions in Ray Data actors that never saw the registration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.families import registry
from pipelines.families.registry import register_family
from tests.conftest import small_config
from tests.toy_family import CentroidFamily

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def centroid_run(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pipelines.runner import run_pipeline

    before = dict(registry._registered)
    register_family(CentroidFamily)
    try:
        cfg = small_config(
            tmp_path_factory.mktemp("centroid"), "name=centroid-demo",
            "train.families=[centroid]", "train.num_samples=3",
            "train.centroid.search_space={temperature: {type: uniform, low: 0.5, high: 4.0}}",
        )
        yield cfg, run_pipeline(cfg)
    finally:
        registry._registered.clear()
        registry._registered.update(before)


def test_the_sweep_tunes_and_registers_the_new_family(centroid_run: Any) -> None:
    cfg, summary = centroid_run
    assert summary.family == "centroid"
    assert set(summary.best_params) == {"temperature"}
    assert 0.5 <= summary.best_params["temperature"] <= 4.0
    assert summary.metrics["roc_auc"] > 0.6  # the demo's signal, learnt by centroids
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(summary.run_id)
    assert run.data.params["family"] == "centroid"
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert sorted(c.data.params["family"] for c in children) == ["centroid"] * 3
    assert len({c.data.params["temperature"] for c in children}) == 3


def test_batch_actors_and_mlflow_load_the_family_from_its_saved_class(
    centroid_run: Any,
) -> None:
    cfg, summary = centroid_run
    preds = pd.read_parquet(summary.outputs["test_predictions"])
    assert len(preds) == summary.counts["rows_test"]
    assert preds["probability"].between(0, 1).all()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    raw = pd.read_parquet(summary.outputs["test_predictions"]).head(50)
    again = model.predict(raw.drop(columns=["prediction", "probability", "churned"],
                                   errors="ignore"))
    np.testing.assert_allclose(again["probability"].to_numpy(),
                               raw["probability"].to_numpy(), rtol=1e-9)


def test_the_evaluation_plots_the_family_s_importances(centroid_run: Any) -> None:
    cfg, summary = centroid_run
    client = mlflow.MlflowClient(cfg.tracking_uri)
    plots = {a.path.split("/")[-1] for a in client.list_artifacts(summary.run_id, "plots")}
    assert "feature_importance.png" in plots
