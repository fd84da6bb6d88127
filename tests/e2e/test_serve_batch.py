"""Batch inference as users run it: `raypipe predict` on the shared 2-CPU Ray instance, any
source kind, partitioned Parquet out, every row predicted or quarantined with a reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.demo import generate_demo_frame

pytestmark = pytest.mark.e2e


def _raypipe(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True,
                          text=True, timeout=600, env={**env, "COLUMNS": "200"})


def _raw(n: int, seed: int) -> pd.DataFrame:
    frame = generate_demo_frame(max(n, 200), seed).drop(columns=["churned"]).head(n)
    return frame.reset_index(drop=True).assign(row_id=np.arange(n))


def test_predict_from_a_configured_csv_source_quarantines_what_it_cannot_score(
        trained: dict[str, Any], tmp_path: Path) -> None:
    """2 actors x 0.25 CPU on the 2-CPU session cluster: reads keep a CPU, nothing hangs."""
    import ray

    assert ray.cluster_resources().get("CPU", 0) <= 2 or os.environ.get("CI") is None
    frame = _raw(600, 21)
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame.loc[[5, 50, 500], "tenure_months"] = "lots"
    frame["signup_date"] = frame["signup_date"].astype(object)
    frame.loc[[7, 70], "signup_date"] = "the day before yesterday"
    data = tmp_path / "in"
    data.mkdir()
    frame.iloc[:300].to_csv(data / "a.csv", index=False)
    frame.iloc[300:].to_csv(data / "b.csv", index=False)
    cfg = tmp_path / "batch.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "raypipe-demo", "target": "churned", "source": {"kind": "demo"},
        "tracking": {"uri": trained["cfg"].tracking_uri},
        "runtime": {"work_dir": str(tmp_path / "work")},
        "batch": {"input": {"kind": "files", "path": str(data), "format": "csv"},
                  "id_columns": ["row_id", "customer_id"], "partition_cols": ["model_version"],
                  "batch_size": 128, "concurrency": 2, "num_cpus_per_actor": 0.25},
    }))
    out = tmp_path / "preds"
    r = _raypipe("predict", "--config", str(cfg), "--output", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    version = str(trained["summary"].model_version)
    assert f"600 rows in, 595 predictions (model version {version})" in r.stderr
    assert "5 quarantined" in r.stderr

    preds = pd.read_parquet(out)
    assert sorted(preds.columns) == sorted(["row_id", "customer_id", "prediction", "probability",
                                            "model_version"])
    assert (out / f"model_version={version}").is_dir()  # hive-partitioned
    assert set(preds["model_version"].astype(str)) == {version}
    bad_ids = {5, 50, 500, 7, 70}
    assert sorted(preds["row_id"]) == sorted(set(range(600)) - bad_ids)  # exactly once each
    quarantine = pd.read_parquet(out / "_quarantine")
    assert sorted(quarantine["row_id"].astype(int)) == sorted(bad_ids)
    reasons = dict(zip(quarantine["row_id"].astype(int), quarantine["_quarantine_reason"],
                       strict=True))
    assert reasons[5].startswith("tenure_months: not a finite number: 'lots'")
    assert reasons[7].startswith("signup_date: not a datetime")

    # The same rows, as Ray Data's CSV reader reads them, through the pyfunc model.
    import mlflow
    import pyarrow.csv as pa_csv

    mlflow.set_tracking_uri(trained["cfg"].tracking_uri)
    good = pa_csv.read_csv(data / "b.csv").to_pandas()
    good = good[~good["row_id"].isin(bad_ids)].reset_index(drop=True)
    good["tenure_months"] = pd.to_numeric(good["tenure_months"])  # a string column in b.csv
    want = mlflow.pyfunc.load_model("models:/raypipe-demo@champion").predict(
        good.drop(columns=["row_id"]))
    got = preds.set_index("row_id").loc[good["row_id"]]
    np.testing.assert_allclose(got["probability"].to_numpy(), want["probability"].to_numpy(),
                               rtol=0, atol=0)


def test_streaming_run_under_a_small_object_store_budget(trained: dict[str, Any],
                                                         tmp_path: Path) -> None:
    """A 40 MB object store budget for ~150k rows: the run streams instead of holding it all."""
    import pyarrow.parquet as pq

    from pipelines.config import BatchConfig
    from pipelines.stages.batch import run_batch_inference
    from pipelines.stages.ingest import read_files

    frame = _raw(2000, 3)
    big = pd.concat([frame] * 75, ignore_index=True).assign(row_id=np.arange(150_000))
    big.to_parquet(tmp_path / "big.parquet", row_group_size=10_000)
    cfg = BatchConfig(batch_size=4096, id_columns=["row_id"], max_object_store_bytes=40 * 2**20,
                      min_rows_per_file=50_000)
    result = run_batch_inference(
        read_files(str(tmp_path / "big.parquet"), "parquet"),
        model_uri="models:/raypipe-demo@champion", tracking_uri=trained["cfg"].tracking_uri,
        cfg=cfg, output_dir=str(tmp_path / "out"))
    assert result.rows_in == result.rows_predicted == 150_000 and result.rows_quarantined == 0
    ids = pd.read_parquet(tmp_path / "out", columns=["row_id"])["row_id"]
    assert ids.is_unique and len(ids) == 150_000
    # 37 batches combined into files of >= 50,000 rows (the last may hold fewer).
    rows = sorted(pq.ParquetFile(f).metadata.num_rows for f in (tmp_path / "out").glob("*.parquet"))
    assert sum(rows) == 150_000 and 2 <= len(rows) <= 4 and rows[-1] >= 50_000, rows


def test_predict_needs_an_input(trained: dict[str, Any], tmp_path: Path) -> None:
    r = _raypipe("predict", "--model", "models:/raypipe-demo@champion", "--output",
                 str(tmp_path / "o"), "--tracking-uri", trained["cfg"].tracking_uri)
    assert r.returncode == 2 and "--input" in r.stderr
