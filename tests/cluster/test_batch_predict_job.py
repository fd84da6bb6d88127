"""ray_jobs/batch_predict.py, called as `ray job submit` would call it, on the shared Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ray_jobs import batch_predict

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ray job submit + a pipeline run


def test_bad_config_returns_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: {kind: demo}\n")  # no target
    assert batch_predict.main([str(bad), "--input", "x", "--output", str(tmp_path / "o")]) == 2


def test_no_input_anywhere_returns_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert batch_predict.main(["--output", str(tmp_path / "o")]) == 2
    assert "give --input, or batch.input" in caplog.text


def test_batch_job_predicts_every_row_with_the_champion(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.dataset as pads

    from pipelines.demo import write_demo_parquet

    raw = write_demo_parquet(tmp_path / "raw", rows=300, seed=11)  # unseen rows, raw as they come
    out = tmp_path / "predictions"
    code = batch_predict.main([
        "--input", str(raw), "--output", str(out),
        "--set", f"runtime.work_dir={trained['work']}",  # the trained run's MLflow store
        "--set", "batch.concurrency=1", "--set", "batch.num_cpus_per_actor=0.25",
    ])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"] == trained["summary"].model_uri  # models:/<name>@champion of the config
    assert result["rows_in"] == result["rows_out"] == 300
    predictions = pads.dataset(str(out), format="parquet").to_table()
    assert {"customer_id", "prediction"} <= set(predictions.column_names)
    assert predictions.num_rows == 300
    assert set(predictions.column("prediction").to_pylist()) <= {0, 1}


def test_batch_job_quarantines_rows_it_cannot_score_and_counts_them(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    from pipelines.demo import generate_demo_frame

    frame = generate_demo_frame(200, 13).drop(columns=["churned"]).head(120)
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame.loc[[3, 77], "tenure_months"] = "forever"  # not a number: cannot be scored
    raw = tmp_path / "raw.csv"
    frame.to_csv(raw, index=False)
    out = tmp_path / "predictions"
    code = batch_predict.main([
        "--input", str(raw), "--format", "csv", "--output", str(out),
        "--set", f"runtime.work_dir={trained['work']}",
        "--set", "batch.concurrency=1", "--set", "batch.num_cpus_per_actor=0.25",
    ])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["rows_in"], result["rows_out"], result["rows_quarantined"]) == (120, 118, 2)
    assert result["model_version"] == trained["summary"].model_version
    quarantined = pd.read_parquet(result["quarantine"])
    assert sorted(quarantined["customer_id"]) == sorted(frame.loc[[3, 77], "customer_id"])
    assert quarantined["_quarantine_reason"].str.startswith("tenure_months").all()
