"""Trials as MLflow child runs: score, learning curve (a metric history by round) and the
parent's standard source tags. A local SQLite store, no Ray."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines import tracking


@pytest.fixture()
def store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "trials", artifact_location=str(tmp_path / "artifacts")))
    yield uri
    mlflow.set_tracking_uri(previous)


def test_each_trial_s_child_run_holds_its_per_round_curve(store: str) -> None:
    trials = [
        {"trial_id": "a", "family": "xgboost", "params": {"eta": 0.1}, "logloss": 0.31,
         "status": "finished", "curve": [[10, 0.5], [20, 0.4], [30, 0.35]]},
        {"trial_id": "b", "family": "linear", "params": {"C": 1.0}, "logloss": 0.4,
         "status": "finished", "curve": [[1, 0.4]]},
        {"trial_id": "c", "family": "mlp", "params": {}, "logloss": None, "status": "error",
         "curve": []},
    ]
    with mlflow.start_run() as parent:
        mlflow.set_tags(tracking.source_tags("0123abcd-dirty"))
        tracking.log_trials(trials, "logloss")
    client = MlflowClient(store)
    children = {r.data.params["family"]: r for r in client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
    assert set(children) == {"xgboost", "linear", "mlp"}
    key = tracking.curve_metric("logloss")
    history = client.get_metric_history(children["xgboost"].info.run_id, key)
    assert sorted((m.step, m.value) for m in history) == [(10, 0.5), (20, 0.4), (30, 0.35)]
    assert [(m.step, m.value) for m in client.get_metric_history(
        children["linear"].info.run_id, key)] == [(1, 0.4)]
    assert client.get_metric_history(children["mlp"].info.run_id, key) == []
    # The trial's score stays one value under its own name.
    assert children["xgboost"].data.metrics["valid_logloss"] == 0.31
    for child in children.values():
        assert child.data.tags["mlflow.source.git.commit"] == "0123abcd"
        assert child.data.tags["mlflow.source.name"]


def test_source_tags_name_the_commit_without_the_dirty_mark() -> None:
    tags = tracking.source_tags("f00d-dirty")
    assert tags["mlflow.source.git.commit"] == "f00d" and tags["mlflow.source.name"]
    assert "mlflow.source.git.commit" not in tracking.source_tags(None)
