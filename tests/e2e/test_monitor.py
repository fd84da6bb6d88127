"""`raypipe monitor` on generated traffic against the model the `trained` fixture registered:
a shift of one feature flags that feature and no other; no shift flags nothing (seeded);
late labels join by request id into live quality metrics; batch output is a valid window."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from pipelines.demo import DEMO_TARGET, generate_demo_frame
from pipelines.storage import storage_path
from tests.conftest import S3_BUCKET
from tests.e2e.cli_helpers import raypipe
from tests.s3 import S3Server

pytestmark = pytest.mark.e2e



def _model(trained: dict[str, Any]) -> str:
    # The version this run registered: under a loaded machine the gate's latency check may
    # leave it @challenger, and the monitor checks whichever version it is given.
    return f"models:/raypipe-demo/{trained['summary'].model_version}"


def _traffic(trained: dict[str, Any], seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Requests as a model would see them: fresh demo rows (another seed), scored."""
    frame = generate_demo_frame(2500, seed)
    frame["monthly_charges"] = frame["monthly_charges"] + shift
    frame.insert(0, "request_id", [f"r{seed}-{i}" for i in range(len(frame))])
    mlflow.set_tracking_uri(trained["cfg"].tracking_uri)
    model = mlflow.pyfunc.load_model(_model(trained))
    inputs = frame.drop(columns=[DEMO_TARGET, "request_id"])
    return pd.concat([frame, model.predict(inputs)], axis=1)


def _monitor_cli(trained: dict[str, Any], window: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    work = trained["work"]
    r = raypipe("monitor", "--window", str(window), "--model", _model(trained),
                "--set", f"runtime.work_dir={work}",
                "--set", f"monitor.output_dir={window.parent / 'reports'}", *extra)
    assert r.returncode in (0, 3), r.stderr
    summaries = sorted((window.parent / "reports").glob("*/summary.json"))
    assert summaries, r.stderr
    summary = json.loads(summaries[-1].read_text())
    assert (summaries[-1].parent / "report.html").stat().st_size > 10_000  # plots inlined
    return r.returncode, summary


def test_monitor_flags_exactly_the_shifted_feature(trained: dict[str, Any], tmp_path: Path) -> None:
    window = tmp_path / "shifted.parquet"
    _traffic(trained, seed=21, shift=30.0).drop(columns=[DEMO_TARGET]).to_parquet(window)
    code, summary = _monitor_cli(trained, window)
    assert code == 3
    assert summary["flagged_features"] == ["monthly_charges"]
    shifted = next(f for f in summary["features"] if f["column"] == "monthly_charges")
    assert shifted["drifted"] and shifted["psi"] > 0.2 and shifted["test"] == "ks"
    monitored = {f["column"] for f in summary["features"]}
    assert {"tenure_months", "total_charges", "plan", "region", "autopay"} <= monitored
    assert summary["window"]["rows"] == 2500 and summary["model"]["version"]


def test_monitor_flags_nothing_without_a_shift(trained: dict[str, Any], tmp_path: Path) -> None:
    window = tmp_path / "same.parquet"
    _traffic(trained, seed=22).drop(columns=[DEMO_TARGET]).to_parquet(window)
    code, summary = _monitor_cli(trained, window)
    assert code == 0, summary["alerts"]
    assert summary["flagged_features"] == [] and not summary["flagged"]
    assert not summary["prediction"]["flagged"]
    assert all(f["psi"] is None or f["psi"] < 0.1 for f in summary["features"])


def test_window_and_reports_in_an_object_store(trained: dict[str, Any], s3: S3Server) -> None:
    """Request logs read from, and reports written to, a bucket: nothing on local disk."""
    root = storage_path(f"s3://{S3_BUCKET}/monitor-{uuid.uuid4().hex[:8]}")
    buf = io.BytesIO()
    _traffic(trained, seed=23, shift=30.0).drop(columns=[DEMO_TARGET]).to_parquet(buf)
    (root / "window" / "part-0.parquet").write_bytes(buf.getvalue())
    r = raypipe("monitor", "--window", str(root / "window"), "--model", _model(trained),
                "--set", f"runtime.work_dir={trained['work']}",
                "--set", f"monitor.output_dir={root / 'reports'}")
    assert r.returncode == 3, r.stderr
    reports = (root / "reports").files()
    (summary_file,) = [f for f in reports if f.endswith("/summary.json")]
    assert summary_file.replace("summary.json", "report.html") in reports
    summary = json.loads((root / "reports" / summary_file).read_text())
    assert summary["flagged_features"] == ["monthly_charges"] and summary["window"]["rows"] == 2500
    shown = "".join(r.stderr.split())  # the CLI's report line, however Rich wrapped it
    assert str(root / "reports") in shown


def test_late_labels_join_batch_output_into_live_quality(trained: dict[str, Any],
                                                         tmp_path: Path) -> None:
    from pipelines.config import BatchConfig
    from pipelines.monitoring import MonitorOptions, monitor
    from pipelines.stages.batch import run_batch_inference
    from pipelines.stages.ingest import read_files

    traffic = _traffic(trained, seed=23)
    raw = traffic.drop(columns=[DEMO_TARGET, "prediction", "probability"])
    raw.to_parquet(tmp_path / "requests.parquet")
    cfg = trained["cfg"]
    out = tmp_path / "batch"
    run_batch_inference(read_files(str(tmp_path / "requests.parquet"), "parquet"),
                        model_uri=_model(trained), tracking_uri=cfg.tracking_uri,
                        cfg=BatchConfig(batch_size=500), output_dir=str(out))
    # Labels arrive later for two rows in three, keyed by request id.
    labels = traffic[["request_id", DEMO_TARGET]].sample(frac=2 / 3, random_state=0)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    result = monitor(cfg.model_copy(update={"monitor": cfg.monitor.model_copy(
        update={"output_dir": str(tmp_path / "reports")})}),
        MonitorOptions(window=str(out), labels=str(tmp_path / "labels.csv"),
                       model_uri=_model(trained)))
    quality = result.summary["quality"]
    joined = pd.read_parquet(out).merge(labels, on="request_id")
    assert quality["rows"] == len(joined) > 0.6 * len(labels)
    assert quality["metric"] == "roc_auc"
    assert set(quality["live"]) >= {"roc_auc", "accuracy", "log_loss"}
    assert quality["training"]["roc_auc"] == pytest.approx(trained["summary"].metrics["roc_auc"])
    assert 0.6 < quality["live"]["roc_auc"] <= 1.0
    # Live metrics equal those computed directly from the joined rows.
    from sklearn.metrics import roc_auc_score

    assert quality["live"]["roc_auc"] == pytest.approx(
        roc_auc_score(joined[DEMO_TARGET], joined["probability"]))
    assert not result.flagged, result.summary["alerts"]
    run = mlflow.get_run(result.summary["mlflow_run_id"])
    assert run.data.tags["raypipe.kind"] == "monitor"
    assert "live_roc_auc" in run.data.metrics and "psi.monthly_charges" in run.data.metrics
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "monitoring")}
    assert logged == {"monitoring/report.html", "monitoring/summary.json"}


def test_ray_job_entrypoint_exits_3_on_drift(trained: dict[str, Any], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from ray_jobs import monitor as job

    window = tmp_path / "window.parquet"
    _traffic(trained, seed=24, shift=-40.0).drop(columns=[DEMO_TARGET]).to_parquet(window)
    code = job.main([
        "--window", str(window), "--model", _model(trained),
        "--set", f"runtime.work_dir={trained['work']}",
        "--set", f"monitor.output_dir={tmp_path / 'reports'}"])
    assert code == job.FLAGGED
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["flagged"] and result["alerts"][0].startswith("monthly_charges:")
    assert Path(result["report"]).is_file()
    assert job.main(["--set", "monitor.psi_threshold=-1"]) == 2  # a bad config, by field
