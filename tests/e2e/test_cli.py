"""The ``raypipe`` command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.config import demo_config_path
from pipelines.demo import generate_demo_frame
from tests.e2e.cli_helpers import RAYPIPE, raypipe
from tests.e2e.cli_helpers import cli_env as _env
from tests.e2e.serving_helpers import free_port

pytestmark = pytest.mark.e2e

def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_validate_accepts_the_bundled_demo_config() -> None:
    r = raypipe("validate", str(demo_config_path()))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stderr and "raypipe-demo" in r.stderr


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "source": {"kind": "demo"}, "target": "y", "trian": {}}, "trian"),
        ({"name": "x", "source": {"kind": "demo"}, "target": "y",
          "train": {"num_samples": "many"}}, "train.num_samples"),
        ({"name": "x", "source": {"kind": "files"}, "target": "y"}, "source.path"),
        ({"name": "x", "source": {"kind": "demo"}}, "target"),
        ({"name": "x", "source": {"kind": "demo"}, "target": "y",
          "train": {"xgboost": {"search_space": {"eta": {"type": "loguniform", "low": 0,
                                                          "high": 1}}}}},
         "train.xgboost.search_space.eta.low"),
    ],
    ids=["unknown-section", "wrong-type", "missing-path", "missing-target", "bad-space"],
)
def test_bad_config_fails_before_ray_with_the_field_named(tmp_path: Path, data: Any,
                                                         field: str) -> None:
    cfg = _write(tmp_path / "bad.yaml", data)
    for command in ("validate", "run"):
        t0 = time.perf_counter()
        r = raypipe(command, str(cfg))
        assert r.returncode == 2, r.stderr
        assert field in r.stderr
        assert "Traceback" not in r.stderr + r.stdout
        assert time.perf_counter() - t0 < 30  # no Ray start, no training


def test_unparseable_yaml_and_missing_config_file(tmp_path: Path) -> None:
    r = raypipe("validate", str(_write(tmp_path / "broken.yaml", "name: [unclosed")))
    assert r.returncode == 2 and "not valid YAML" in r.stderr
    r = raypipe("run", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "config file not found" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_input_file_is_a_clear_error(ray_address: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data.parquet"
    cfg = _write(tmp_path / "files.yaml", {
        "name": "files-demo", "target": "churned",
        "source": {"kind": "files", "path": str(missing), "format": "parquet"},
        "runtime": {"work_dir": str(tmp_path / "work")},
    })
    r = raypipe("run", str(cfg))
    assert r.returncode == 1
    assert "input path does not exist" in r.stderr and str(missing) in r.stderr
    assert "Traceback" not in r.stderr


def _raw_rows(tmp_path: Path, n: int = 500) -> tuple[Path, pd.DataFrame]:
    frame = generate_demo_frame(2000, 11).drop(columns=["churned"]).head(n)
    path = tmp_path / "raw.parquet"
    frame.to_parquet(path)
    return path, frame


def test_predict_writes_one_row_per_input_row(trained: dict[str, Any], tmp_path: Path) -> None:
    path, frame = _raw_rows(tmp_path)
    out = tmp_path / "preds"
    r = raypipe("predict", "--model", "models:/raypipe-demo@champion", "--input", str(path),
                "--output", str(out), "--tracking-uri", trained["cfg"].tracking_uri)
    assert r.returncode == 0, r.stderr
    preds = pd.read_parquet(out)
    assert len(preds) == len(frame)
    assert sorted(preds["customer_id"]) == sorted(frame["customer_id"])
    assert preds["probability"].between(0, 1).all()
    # A second run into the same folder refuses instead of mixing files.
    again = raypipe("predict", "--model", "models:/raypipe-demo@champion", "--input", str(path),
                    "--output", str(out), "--tracking-uri", trained["cfg"].tracking_uri)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_predict_explain_adds_attributions_that_add_up_to_the_probability(
        trained: dict[str, Any], tmp_path: Path) -> None:
    path, frame = _raw_rows(tmp_path, 200)
    out = tmp_path / "explained"
    r = raypipe("predict", "--model", "models:/raypipe-demo@champion", "--input", str(path),
                "--output", str(out), "--tracking-uri", trained["cfg"].tracking_uri,
                "--explain")
    assert r.returncode == 0, r.stderr
    preds = pd.read_parquet(out)
    assert len(preds) == len(frame)
    contributions = [f"contribution_{c}" for c in frame.columns]
    assert set(contributions) <= set(preds.columns)
    margin = preds[contributions].sum(axis=1) + preds["contribution_bias"]
    # Binary: the margin is the log-odds of the probability written beside it.
    assert ((1 / (1 + np.exp(-margin)) - preds["probability"]).abs() < 1e-5).all()
    assert (preds["contribution_customer_id"] == 0).all()  # an id the model never reads


def test_predict_names_a_missing_column_and_a_missing_model(trained: dict[str, Any],
                                                            tmp_path: Path) -> None:
    path, frame = _raw_rows(tmp_path, 50)
    frame.drop(columns=["plan"]).to_parquet(path)
    uri = trained["cfg"].tracking_uri
    r = raypipe("predict", "--model", "models:/raypipe-demo@champion", "--input", str(path),
                "--output", str(tmp_path / "o"), "--tracking-uri", uri)
    assert r.returncode == 1 and "missing column(s): plan" in r.stderr
    r = raypipe("predict", "--model", "models:/no-such-model@champion", "--input", str(path),
                "--output", str(tmp_path / "o2"), "--tracking-uri", uri)
    assert r.returncode == 1 and "cannot load model" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_end_to_end_through_the_cli(ray_address: str, tmp_path: Path) -> None:
    r = raypipe("run", "--rows", "2000", "--set", f"runtime.work_dir={tmp_path}",
                "--set", "train.num_samples=4", "--set", "train.xgboost.num_boost_round=30")
    assert r.returncode == 0, r.stderr[-3000:]
    for text in ("raypipe run finished", "models:/raypipe-demo@champion", "roc_auc",
                 "test_predictions", "wall time"):
        assert text in r.stderr
    # Stage outputs live in the stage cache, under the batch stage's key.
    preds = list((tmp_path / "cache" / "raypipe-demo").glob("batch/*/test_predictions/*.parquet"))
    assert preds


def test_serve_command_answers_predict(trained: dict[str, Any]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*RAYPIPE, "serve", "--model", "models:/raypipe-demo@champion", "--port", str(port),
         "--tracking-uri", trained["cfg"].tracking_uri],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(1)
        row = {"customer_id": "c1", "signup_date": "2021-03-04T00:00:00",
               "last_login": "2024-02-01T10:30:00", "tenure_months": 3, "monthly_charges": None,
               "total_charges": 150.5, "support_calls": 4, "plan": " BASIC",
               "region": "south", "payment_method": None, "autopay": False}
        r = httpx.post(f"{url}/predict", json={"instances": [row]}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0] in (0, 1)
        bad = httpx.post(f"{url}/predict", json={"instances": [{**row, "support_calls": "x"}]},
                         timeout=30)
        assert bad.status_code == 422 and "support_calls" in bad.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
