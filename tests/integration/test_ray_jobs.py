"""The ``ray_jobs`` entrypoints, called as ``ray job submit`` would call them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_jobs import run_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # runs whole pipelines or fault-injected fits


def test_bad_config_returns_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: {kind: demo}\n")  # no target
    assert run_pipeline.main([str(bad)]) == 2


def test_run_pipeline_job_prints_summary(ray_address: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = run_pipeline.main([
        "--set", "source.rows=1500", "--set", f"runtime.work_dir={tmp_path}",
        "--set", "train.num_samples=1", "--set", "train.xgboost.num_boost_round=10",
        "--set", "tracking.registered_model=job-demo",
    ])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model_uri"] == "models:/job-demo@champion"
    assert summary["counts"]["rows_predicted"] == summary["counts"]["rows_test"]
