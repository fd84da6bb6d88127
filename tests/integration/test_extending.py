"""raypipe extended from outside the package: the toy source kind (``tests/extending_helpers.py``)
and the centroid model family (``tests/toy_family.py``), the README's examples, registered in
this process and run through whole pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pipelines.config import PipelineConfig, parse_config
from pipelines.families import get_family
from pipelines.runner import run_pipeline
from pipelines.sources import get_reader
from pipelines.stages.ingest import source_fingerprint
from tests.extending_helpers import ToyReader, ToySource
from tests.toy_family import CentroidFamily

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # runs whole pipelines

# One quick trial, no plots: these tests prove the extension points, not the model.
QUICK: dict[str, Any] = {
    "train": {"num_samples": 1, "xgboost": {"num_boost_round": 20, "early_stopping_rounds": 5}},
    "evaluate": {"plots": False},
}


@pytest.fixture
def local_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Track in the config's default store: SQLite plus artifacts under its work_dir (an
    explicit ``tracking.uri`` would leave MLflow's artifacts in ./mlruns)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def toy_config(work_dir: Path, source: dict[str, Any] | None = None,
               **sections: Any) -> PipelineConfig:
    """A small whole pipeline on the toy source (``sections`` replace QUICK's)."""
    data = {"name": "toy-pipeline", "source": {"kind": "toy", "rows": 400, "seed": 1, **(source or {})},
            "target": "label", "task": "binary", **QUICK, **sections,
            "runtime": {"work_dir": str(work_dir)}}
    return parse_config(data)


def test_a_source_kind_from_outside_the_package_trains_and_registers(
        ray_address: str, local_tracking: None, tmp_path: Path) -> None:
    cfg = toy_config(tmp_path / "work")
    assert cfg.tracking_uri.startswith("sqlite:") and str(tmp_path) in cfg.tracking_uri
    assert isinstance(cfg.source, ToySource)
    assert isinstance(get_reader(cfg.source, cfg.work_dir), ToyReader)

    first = run_pipeline(cfg)
    assert first.counts["rows_read"] == first.counts["rows_in"] == 400  # the reader's count
    assert first.counts["rows_valid"] + first.counts["rows_quarantined"] == 400
    assert first.model_version and 0.5 < first.metrics["roc_auc"] <= 1.0

    client = MlflowClient(cfg.tracking_uri)
    assert client.get_model_version(cfg.model_name, first.model_version).run_id == first.run_id
    run = client.get_run(first.run_id)
    fingerprint = run.data.tags["raypipe.data_fingerprint"]
    assert run.data.tags["raypipe.source_kind"] == "toy"
    assert fingerprint == source_fingerprint(cfg.source, cfg.work_dir)[1]
    logged = yaml.safe_load(Path(client.download_artifacts(first.run_id, "config.yaml",
                                                           str(tmp_path))).read_text())
    assert logged["source"] == {"kind": "toy", "rows": 400, "seed": 1}  # the plugin's fields

    # Same settings, same data: the same fingerprint, and the stages after ingest are reused.
    again = run_pipeline(cfg)
    assert client.get_run(again.run_id).data.tags["raypipe.data_fingerprint"] == fingerprint
    assert "validate" in again.reused_stages
    # Another seed, other rows: another fingerprint.
    other = toy_config(tmp_path / "work", {"seed": 2})
    assert source_fingerprint(other.source, other.work_dir)[1] != fingerprint


def test_a_model_family_from_outside_the_package_is_swept_registered_and_served(
        ray_address: str, local_tracking: None, tmp_path: Path) -> None:
    assert isinstance(get_family("centroid"), CentroidFamily)  # registered by the import
    cfg = toy_config(tmp_path / "work", name="toy-centroid", evaluate={"plots": True}, train={
        "families": ["centroid"], "num_samples": 3,
        "centroid": {"search_space": {"temperature": {"type": "uniform", "low": 0.5,
                                                      "high": 4.0}}}})
    summary = run_pipeline(cfg)
    assert summary.family == "centroid" and set(summary.best_params) == {"temperature"}
    assert 0.5 < summary.metrics["roc_auc"] <= 1.0  # the toy's signal, learnt by centroids

    client = MlflowClient(cfg.tracking_uri)
    run = client.get_run(summary.run_id)
    assert run.data.params["family"] == "centroid"
    trials = client.search_runs([run.info.experiment_id],
                                filter_string=f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert sorted(t.data.params["family"] for t in trials) == ["centroid"] * 3
    assert len({t.data.params["temperature"] for t in trials}) == 3  # a real sweep
    plots = {a.path.split("/")[-1] for a in client.list_artifacts(summary.run_id, "plots")}
    assert "feature_importance.png" in plots  # from CentroidFamily.importances
    assert "attributions.png" not in plots  # no contributions: no made-up attributions

    # Batch inference ran in Ray Data actors, which never registered the family: they
    # imported it from the class the saved model names. MLflow's pyfunc gives the same.
    preds = pd.read_parquet(summary.outputs["test_predictions"])
    assert len(preds) == summary.counts["rows_test"]
    assert preds["probability"].between(0, 1).all()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    again = model.predict(preds[["id", "x", "plan"]])
    np.testing.assert_allclose(again["probability"].to_numpy(), preds["probability"].to_numpy(),
                               rtol=1e-9)
    assert type(model.unwrap_python_model().predictor).__name__ == "CentroidModel"
