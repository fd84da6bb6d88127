"""`raypipe profile` as a user runs it, and the round trip of the contract it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.config import parse_config
from pipelines.demo import generate_demo_frame
from tests.e2e.cli_helpers import raypipe

pytestmark = pytest.mark.e2e


def test_profile_round_trip_same_data_passes_broken_copy_is_quarantined(
        ray_address: str, tmp_path: Path) -> None:
    from pipelines.stages.ingest import read_files
    from pipelines.stages.validate import RULE_COLUMN, validate

    df = generate_demo_frame(1200, 11).assign(order_id=lambda d: [f"O{i:05d}" for i in range(len(d))])
    data = tmp_path / "data"
    data.mkdir()
    df.iloc[:600].to_parquet(data / "part-0.parquet")  # two files: two blocks at least
    df.iloc[600:].to_parquet(data / "part-1.parquet")

    r = raypipe("profile", str(data), "--output", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "contract.yaml" in r.stderr and "order_id" in r.stderr  # the key found is shown
    text = (tmp_path / "out" / "contract.yaml").read_text()
    report = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert report["profile"]["rows"] == 1200
    assert (tmp_path / "out" / "quality_report.html").is_file()

    cfg = parse_config({"name": "rt", "source": {"kind": "files", "path": str(data)},
                        "target": "churned", **yaml.safe_load(text)})
    assert cfg.schema_.unique_key == ["order_id"]  # verified unique, so suggested
    assert cfg.schema_.columns["plan"].allowed == ["basic", "premium", "standard"]

    same = validate(read_files(str(data), "parquet"), cfg.schema_, cfg.target)
    assert (same.rows_in, same.rows_quarantined) == (1200, 0)

    broken = df.iloc[:50].copy()
    broken.loc[broken.index[0], "plan"] = "platinum"
    broken.loc[broken.index[1], "tenure_months"] = 10_000.0
    broken.loc[broken.index[2], "order_id"] = broken["order_id"].iloc[3]
    broken.loc[broken.index[4], "customer_id"] = None
    broken.to_parquet(tmp_path / "broken.parquet")
    bad = validate(read_files(str(tmp_path / "broken.parquet"), "parquet"), cfg.schema_,
                   cfg.target, enforce=False)
    assert (bad.rows_in, bad.rows_valid, bad.rows_quarantined) == (50, 46, 4)
    rules = sorted(bad.quarantined.to_pandas()[RULE_COLUMN])
    assert rules == ["allowed", "max", "nullable", "unique_key"]


def test_profile_reads_a_pipeline_config_and_refuses_bad_settings(ray_address: str,
                                                                   tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    pd.DataFrame({"x": [1, 2, 3, 2], "label": ["a", "b", "a", "a"]}).to_csv(data, index=False)
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"name": "p", "target": "label",
                                      "source": {"kind": "files", "path": str(data),
                                                 "format": "csv"}}))
    r = raypipe("profile", str(config), "-o", str(tmp_path / "out"),
                "--set", "schema.profile.range_margin=0.5")
    assert r.returncode == 0, r.stderr
    columns = yaml.safe_load((tmp_path / "out" / "contract.yaml").read_text())["schema"]["columns"]
    assert columns["x"] == {"type": "int", "nullable": False, "min": 0.0, "max": 4.0}
    assert columns["label"]["allowed"] == ["a", "b"]

    r = raypipe("profile", str(data), "--set", "train.num_samples=3")
    assert r.returncode == 2 and "only schema.profile.* can be set" in r.stderr
    r = raypipe("profile", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "o2"))
    assert r.returncode == 1 and "nope.parquet" in r.stderr and "Traceback" not in r.stderr
