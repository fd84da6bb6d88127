"""The ray_jobs' shared checks refuse, before Ray starts, what the CLI refuses."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from pipelines.config import parse_config
from pipelines.job_args import job_config, job_model_uri, job_output_ok

CFG = parse_config({"name": "churn", "source": {"kind": "demo"}, "target": "churned"})


def test_the_batch_job_writes_only_to_a_new_or_empty_folder_apart_from_its_input(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("keep")
    assert not job_output_ok(str(home), None, CFG)
    assert not job_output_ok(str(tmp_path / "in"), str(tmp_path / "in" / "x.csv"), CFG)
    files = parse_config({"name": "churn", "target": "churned", "source": {"kind": "demo"},
                          "batch": {"input": {"kind": "files", "path": str(tmp_path / "raw")}}})
    assert not job_output_ok(str(tmp_path), None, files)  # the config's input lies inside
    assert job_output_ok(str(tmp_path / "preds"), None, files)
    assert (home / "notes.txt").read_text() == "keep"


def test_the_jobs_refuse_a_model_uri_outside_the_name_rules() -> None:
    assert job_model_uri("models:/../../tmp/x@champion", CFG) is None
    assert job_model_uri(None, CFG) == "models:/churn@champion"


def test_a_job_s_log_masks_credentials_whatever_logger_writes_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: churn\ntarget: churned\nsource: {kind: demo}\n")
    assert job_config(argparse.Namespace(config=str(config), overrides=[])) is not None
    logging.getLogger("a.library.of.the.job").warning(
        "retrying %s", "https://user:" "hunter2@mlflow.internal/api")
    assert "hunter2" not in caplog.text and "https://user:***@mlflow.internal/api" in caplog.text
