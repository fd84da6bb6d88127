"""`raypipe predict --config` scores rows from a non-file source kind (batch.input: sql)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from pipelines.demo import generate_demo_frame
from tests.e2e.cli_helpers import raypipe

pytestmark = pytest.mark.e2e


def test_predict_reads_batch_input_from_sqlite(trained: dict[str, Any], tmp_path: Path) -> None:
    frame = generate_demo_frame(300, seed=5).drop(columns=["churned"])
    db = tmp_path / "new_rows.db"
    with sqlite3.connect(db) as conn:
        frame.to_sql("incoming", conn, index=False)
    cfg = tmp_path / "predict.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "raypipe-demo", "source": {"kind": "demo"}, "target": "churned",
        "batch": {"input": {"kind": "sql", "url": f"sqlite:///{db}",
                            "query": "SELECT * FROM incoming WHERE region IS NOT NULL"}},
    }))
    out = tmp_path / "preds"
    r = raypipe("predict", "--config", str(cfg), "--model", "models:/raypipe-demo@champion",
                "--output", str(out), "--tracking-uri", trained["cfg"].tracking_uri)
    assert r.returncode == 0, r.stderr
    preds = pd.read_parquet(out)
    assert sorted(preds["customer_id"]) == sorted(frame["customer_id"])
    assert preds["probability"].between(0, 1).all()
