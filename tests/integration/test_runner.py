"""The whole pipeline on a small demo data set, through the runner, on the shared Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipelines.demo import generate_demo_frame
from pipelines.model.spec import conform_input
from pipelines.runner import STAGES
from pipelines.stages.validate import REASON_COLUMN
from pipelines.tracking import NATIVE_MODEL_KEY
from tests.native_helpers import predict_without_raypipe

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # runs whole pipelines or fault-injected fits


def test_every_stage_ran_in_order(trained: dict[str, Any]) -> None:
    starts = [s for s, e in trained["events"] if e == "start"]
    dones = [s for s, e in trained["events"] if e == "done"]
    assert starts == STAGES
    assert dones == STAGES
    assert set(trained["summary"].stage_seconds) == set(STAGES)
    # The sweep told the caller about its trials while the train stage ran.
    events = trained["events"]
    progress = [i for i, (s, e) in enumerate(events) if e == "progress"]
    assert progress and {events[i][0] for i in progress} == {"train"}
    assert events.index(("train", "start")) < min(progress)
    assert max(progress) < events.index(("train", "done"))


def test_the_trained_model_leaves_no_temporary_folder(trained: dict[str, Any]) -> None:
    # The sweep's winner and the refit are written to temporary folders, then stored in the
    # stage's folder; left behind, every run would add a model to the machine's /tmp.
    assert trained["temporary_model_dirs_left"] == set()


def test_rows_add_up(trained: dict[str, Any]) -> None:
    c = trained["summary"].counts
    assert c["rows_read"] == c["rows_in"] == 3000  # Parquet footers agree with validation
    assert c["rows_in"] == c["rows_valid"] + c["rows_quarantined"]
    assert c["rows_quarantined"] > 0  # the demo plants negative tenures
    assert c["rows_train"] + c["rows_valid_split"] + c["rows_test"] == c["rows_valid"]
    assert c["rows_train_deduped"] < c["rows_train"]  # the demo plants duplicates
    assert c["rows_predicted"] == c["rows_test"]


def test_quarantine_file_holds_each_bad_row_with_a_reason(trained: dict[str, Any]) -> None:
    s = trained["summary"]
    q = pd.read_parquet(s.outputs["quarantine"])
    assert len(q) == s.counts["rows_quarantined"]
    assert q[REASON_COLUMN].notna().all()
    assert q[REASON_COLUMN].str.contains("tenure_months: below min").any()
    assert (q["tenure_months"] < 0).sum() >= 1  # original values are kept, not coerced away


def test_split_is_stratified(trained: dict[str, Any]) -> None:
    s = trained["summary"]
    preds = pd.read_parquet(s.outputs["test_predictions"])
    full = generate_demo_frame(3000, 7)
    base_rate = full["churned"].mean()
    assert abs(preds["churned"].mean() - base_rate) < 0.02


def test_batch_output_one_row_per_test_row_with_prediction(trained: dict[str, Any]) -> None:
    s = trained["summary"]
    preds = pd.read_parquet(s.outputs["test_predictions"])
    assert len(preds) == s.counts["rows_test"]
    assert preds["customer_id"].notna().all()
    assert set(preds["prediction"].unique()) <= {0, 1}
    assert preds["probability"].between(0, 1).all()


def test_metrics_are_real(trained: dict[str, Any]) -> None:
    m = trained["summary"].metrics
    assert {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc",
            "log_loss"} <= set(m)
    assert m["roc_auc"] > 0.65  # the demo's signal is learnable; chance is 0.5
    assert 0 < m["log_loss"] < 0.6


def test_registry_has_champion_with_signature(trained: dict[str, Any]) -> None:
    cfg, s = trained["cfg"], trained["summary"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    mv = client.get_model_version_by_alias("raypipe-demo", "champion")
    assert str(mv.version) == s.model_version
    info = mlflow.models.get_model_info("models:/raypipe-demo@champion")
    inputs = {c.name for c in info.signature.inputs.inputs}
    assert "plan" in inputs and "churned" not in inputs
    assert info.saved_input_example_info is not None


def test_registered_model_has_its_booster_in_mlflows_xgboost_flavour(
        trained: dict[str, Any], tmp_path: Path) -> None:
    """The champion's native model loads where raypipe cannot be imported, by
    ``mlflow.xgboost`` and ``mlflow.pyfunc``, and predicts what the end-to-end pyfunc does
    from the featurised rows."""
    cfg = trained["cfg"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    info = mlflow.models.get_model_info("models:/raypipe-demo@champion")
    native_uri = info.metadata[NATIVE_MODEL_KEY]
    assert native_uri.startswith("models:/m-")
    # and as a tag of the pyfunc's logged model (the version's source, models:/m-<id>)
    assert client.get_logged_model(info.model_id).tags[NATIVE_MODEL_KEY] == native_uri
    # and on the registered version itself
    version = client.get_model_version_by_alias("raypipe-demo", "champion")
    assert version.tags[NATIVE_MODEL_KEY] == native_uri
    assert "xgboost" in mlflow.models.get_model_info(native_uri).flavors

    e2e = mlflow.pyfunc.load_model("models:/raypipe-demo@champion")
    spec = e2e.unwrap_python_model().spec
    raw = conform_input(generate_demo_frame(600, 11).drop(columns=["churned"]), spec)
    expected = e2e.predict(raw)["probability"].to_numpy()
    np.save(tmp_path / "features.npy", spec.pipeline.transform(raw).to_numpy(np.float64))
    out = predict_without_raypipe(
        [{"name": "champion", "uri": native_uri, "flavour": "xgboost",
          "features": str(tmp_path / "features.npy")}], tmp_path, cfg.tracking_uri)
    native, via_pyfunc = (np.asarray(v) for v in out["champion"])
    np.testing.assert_array_equal(native, expected)
    np.testing.assert_array_equal(via_pyfunc, expected)

    local = Path(mlflow.artifacts.download_artifacts(native_uri))
    saved = json.loads((local / "feature_pipeline.json").read_text())
    assert saved == spec.pipeline.model_dump(mode="json")


def test_run_records_lineage(trained: dict[str, Any]) -> None:
    cfg, s = trained["cfg"], trained["summary"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    run = MlflowClient().get_run(s.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert len(tags["raypipe.data_fingerprint"]) == 64
    assert tags["raypipe.git_sha"]
    assert "best.eta" in params and "best.max_depth" in params and params["family"] == "xgboost"
    assert metrics["test_roc_auc"] == pytest.approx(s.metrics["roc_auc"])
    arts = {a.path for a in MlflowClient().list_artifacts(s.run_id)}
    assert {"config.yaml", "feature_pipeline.json", "tune_trials.json"} <= arts


def test_pyfunc_predicts_raw_rows_with_missing_values_and_odd_spellings(
    trained: dict[str, Any],
) -> None:
    cfg = trained["cfg"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    raw = generate_demo_frame(3000, 7).drop(columns=["churned"])
    raw = raw[raw["tenure_months"] >= 0].head(400)
    assert raw["monthly_charges"].isna().any()
    assert raw["plan"].isna().any()
    assert (raw["plan"].dropna() != raw["plan"].dropna().str.strip().str.lower()).any()
    model = mlflow.pyfunc.load_model("models:/raypipe-demo@champion")
    out = model.predict(raw)
    assert len(out) == len(raw)
    assert out["probability"].notna().all()
    # Spelling variants are the same category to the fitted pipeline.
    a = raw.head(1).assign(plan="basic")
    b = raw.head(1).assign(plan="  BASIC ")
    assert model.predict(a)["probability"].iloc[0] == model.predict(b)["probability"].iloc[0]


def test_first_model_becomes_champion_after_passing_checks(trained: dict[str, Any]) -> None:
    s = trained["summary"]
    assert s.alias == "champion" and s.champion_metrics is None
    assert s.failed_checks == []
    assert "no champion" in s.gate_reason


def test_plots_evaluation_and_checks_are_logged(trained: dict[str, Any]) -> None:
    cfg, s = trained["cfg"], trained["summary"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    plots = {a.path.split("/")[-1] for a in client.list_artifacts(s.run_id, "plots")}
    assert any("roc" in p for p in plots) and any("confusion" in p for p in plots)
    assert any("calibration" in p for p in plots) and "feature_importance.png" in plots
    assert "attributions.png" in plots  # the SHAP-style summary of the XGBoost champion
    local = client.download_artifacts(s.run_id, "evaluation.json")
    evaluation = json.loads(Path(local).read_text())
    assert {"plan", "region"} <= set(evaluation["slices"])
    assert sum(sum(r) for r in evaluation["confusion"]) == s.counts["rows_test"]
    checks = json.loads(Path(client.download_artifacts(s.run_id, "checks.json")).read_text())
    assert {c["name"] for c in checks} >= {"finite", "deterministic", "latency"}
    assert all(c["passed"] for c in checks)


def test_trials_are_child_runs_and_data_is_an_input(trained: dict[str, Any]) -> None:
    cfg, s = trained["cfg"], trained["summary"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    run = client.get_run(s.run_id)
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{s.run_id}'")
    assert len(children) == 4  # train.num_samples in the small config
    assert all("family" in c.data.params for c in children)
    digests = [d.dataset.digest for d in run.inputs.dataset_inputs]
    assert digests == [run.data.tags["raypipe.data_fingerprint"][:36]]
    assert run.data.tags["raypipe.version.xgboost"]
    assert any(k.startswith("slice.plan.basic.") for k in run.data.metrics)
    assert run.data.tags["raypipe.git_dirty"] in ("true", "false")
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["raypipe.git_sha"].removesuffix(
        "-dirty")
    assert run.data.tags["mlflow.source.name"]
    # Every trial's learning curve: the validation metric per round (every 10 boosting
    # rounds, up to where the earliest-stopping fold stopped: the folds' mean, as these small
    # trials are cross-validated).
    lengths = []
    for child in children:
        history = client.get_metric_history(child.info.run_id, "valid_logloss_by_round")
        steps = sorted(m.step for m in history)
        assert steps == list(range(10, 10 * len(steps) + 1, 10)) and steps, steps
        lengths.append(len(steps))
        assert child.data.tags["mlflow.source.git.commit"] == run.data.tags[
            "mlflow.source.git.commit"]
    assert max(lengths) >= 2


def test_a_worse_model_is_registered_as_challenger(trained: dict[str, Any]) -> None:
    """Same store, same data: a crippled model must not take the champion alias."""
    from pipelines.runner import run_pipeline
    from tests.conftest import small_config

    cfg = small_config(trained["work"], "train.num_samples=1",
                       "train.xgboost.num_boost_round=1",
                       "train.xgboost.search_space.max_depth={type: choice, values: [1]}",
                       "train.xgboost.search_space.eta={type: choice, values: [0.01]}")
    before = trained["summary"]
    s = run_pipeline(cfg)
    assert s.alias == "challenger"
    assert s.champion_metrics is not None
    assert s.metrics["roc_auc"] < s.champion_metrics["roc_auc"]
    assert "roc_auc" in s.gate_reason
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("raypipe-demo", "champion").version) == (
        before.model_version)
    assert str(client.get_model_version_by_alias("raypipe-demo", "challenger").version) == (
        s.model_version)


def test_reads_are_cut_into_two_blocks_per_cpu(ray_address: str, tmp_path: Path) -> None:
    """Ray Data's floor of 200 read blocks (of >= 1 MiB) cut the 1M-row demo into 113 blocks
    on 2 CPUs, and every later pass ran one task per block; the runner asks for two per CPU."""
    import ray

    from pipelines.runner import size_reads
    from pipelines.sources.files import read_files

    ctx = ray.data.DataContext.get_current()
    before = ctx.read_op_min_num_blocks
    path = tmp_path / "wide.parquet"
    pd.DataFrame({"x": np.arange(2_000_000, dtype=np.float64)}).to_parquet(path)  # 16 MB
    cpus = int(ray.cluster_resources()["CPU"])
    try:
        ctx.read_op_min_num_blocks = 200
        # Ray's default: one block per MiB or so (17 here)
        assert read_files(str(path), "parquet").materialize().num_blocks() > 4 * cpus
        size_reads()
        assert ctx.read_op_min_num_blocks == 2 * cpus
        ds = read_files(str(path), "parquet").materialize()
        assert ds.num_blocks() == 2 * cpus and ds.count() == 2_000_000
        ctx.read_op_min_num_blocks = 3
        size_reads()
        assert ctx.read_op_min_num_blocks == 3  # a smaller floor set by the user stands
    finally:
        ctx.read_op_min_num_blocks = before
