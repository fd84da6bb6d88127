"""Bad data files through the pipeline: each is refused with a clear error naming the file or
column (through the CLI, no traceback), or its bad rows are quarantined with counts that add up.

Refused files must fail before training starts; the quarantine case runs the whole (small)
pipeline, so its counts are followed to the predictions. Prints rows in / out for
RELIABILITY.md.
(Truncated Parquet and CSV values of the wrong type: tests/integration/test_sources.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from pipelines.config import parse_config
from pipelines.demo import generate_demo_frame
from tests.config_mutations import demo_data
from tests.e2e.cli_helpers import raypipe

pytestmark = pytest.mark.e2e

ROWS = 600


def _frame() -> pd.DataFrame:
    return generate_demo_frame(ROWS, 7)


def _config(path: Path, work: Path, fmt: str = "csv") -> dict[str, Any]:
    data = demo_data()
    data["source"] = {"kind": "files", "path": str(path), "format": fmt}
    data["runtime"] = {**data.get("runtime", {}), "work_dir": str(work)}
    data["schema"]["max_quarantine_fraction"] = 0.2
    data["train"].update(num_samples=1)
    data["train"]["xgboost"].update(num_boost_round=20, early_stopping_rounds=5)
    data["evaluate"]["plots"] = False
    return data


def _cli_error(tmp_path: Path, data: dict[str, Any]) -> str:
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(yaml.safe_dump(data))
    r = raypipe("run", str(cfg), timeout=300)
    out = r.stderr + r.stdout
    assert r.returncode != 0, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    return " ".join(out.split())


def _error_line(output: str) -> str:
    return output[output.index("error:"):][:300] if "error:" in output else output[-300:]


def _run(data: dict[str, Any]) -> Any:
    from pipelines.runner import run_pipeline

    return run_pipeline(parse_config(data))


def _adds_up(c: dict[str, int]) -> None:
    assert c["rows_in"] == c["rows_valid"] + c["rows_quarantined"], c
    assert c["rows_train"] + c["rows_valid_split"] + c["rows_test"] == c["rows_valid"], c


def test_a_file_in_another_encoding_is_named(ray_address: str, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    frame = _frame()
    frame.loc[[3, 50], "region"] = "Zürich"
    frame.to_csv(path, index=False, encoding="latin-1")
    message = _cli_error(tmp_path, _config(path, tmp_path))
    print(f"\nbad encoding: {ROWS} rows in, run refused: {_error_line(message)}")
    assert "latin1.csv" in message and "'region' is not valid utf-8 text" in message
    assert "source.encoding" in message
    # Read in the file's own encoding, every row arrives with its text intact.
    from pipelines.stages.ingest import read_source

    data = _config(path, tmp_path)
    data["source"]["encoding"] = "latin-1"
    rows = read_source(parse_config(data).source, tmp_path).to_pandas()
    print(f"bad encoding, source.encoding=latin-1: {len(rows)} rows read, "
          f"{(rows['region'] == 'Zürich').sum()} with the non-UTF-8 text intact")
    assert len(rows) == ROWS and (rows["region"] == "Zürich").sum() == 2


def test_an_empty_file_is_a_clear_error(ray_address: str, tmp_path: Path) -> None:
    for name, content in (("empty.csv", b""), ("header-only.csv", b"customer_id,churned\n")):
        path = tmp_path / name
        path.write_bytes(content)
        message = _cli_error(tmp_path, _config(path, tmp_path))
        print(f"\nempty file {name}: 0 rows in, run refused: {_error_line(message)}")
        assert name in message or "the input has no rows" in message, message


def _written(frame: pd.DataFrame, tmp_path: Path, kind: str) -> dict[str, Any]:
    """``frame`` stored for a source of ``kind``, and that source's settings: a CSV file
    (``files``), JSON Lines read by ``ray.data.read_json`` or a SQLite table read by
    ``ray.data.read_sql`` through the DB-API driver (``raydata``)."""
    if kind == "files":
        frame.to_csv(tmp_path / "rows.csv", index=False)
        return {"kind": "files", "path": str(tmp_path / "rows.csv"), "format": "csv"}
    if kind == "raydata-json":
        frame.to_json(tmp_path / "rows.jsonl", orient="records", lines=True, date_format="iso")
        return {"kind": "raydata", "reader": "read_json",
                "args": {"paths": str(tmp_path / "rows.jsonl")}}
    import sqlite3

    with sqlite3.connect(tmp_path / "rows.db") as conn:
        frame.to_sql("customers", conn, index=False)
    return {"kind": "raydata", "reader": "read_sql", "args": {"sql": "SELECT * FROM customers",
            # one read task: no 200-way split of its output (README, kind raydata)
            "override_num_blocks": 1},
            "factories": {"connection_factory": {"function": "sqlite3.connect",
                                                 "args": {"database": str(tmp_path / "rows.db")}}}}


@pytest.mark.parametrize("kind", ["files", "raydata-json", "raydata-sql"])
def test_unparseable_dates_and_an_all_null_column_lose_no_row(ray_address: str, tmp_path: Path,
                                                               kind: str) -> None:
    frame = _frame()
    bad = [5, 17, 99, 240, 511]
    frame["signup_date"] = frame["signup_date"].astype(str)
    frame.loc[bad, "signup_date"] = ["2021-13-45", "yesterday", "31/31/2020", "0", "2021-02-30"]
    frame["monthly_charges"] = None  # all null: nothing to learn from, nothing to fail on
    data = _config(tmp_path, tmp_path)
    data["source"] = _written(frame, tmp_path, kind)
    summary = _run(data)
    c = summary.counts
    print(f"\n{kind}: unparseable dates + all-null column: {c['rows_in']} rows in, {c['rows_valid']} "
          f"valid, {c['rows_quarantined']} quarantined ({len(bad)} planted bad dates), "
          f"{c['rows_train']}/{c['rows_valid_split']}/{c['rows_test']} train/valid/test, "
          f"{c['rows_predicted']} test rows predicted")
    _adds_up(c)
    assert c["rows_in"] == ROWS and c["rows_predicted"] == c["rows_test"]
    quarantine = pd.read_parquet(summary.outputs["quarantine"])
    assert len(quarantine) == c["rows_quarantined"]
    planted = set(frame.loc[bad, "customer_id"])
    assert planted <= set(quarantine["customer_id"])  # each with a reason (the first it broke)
    dated = quarantine[quarantine["_quarantine_reason"].str.contains("signup_date")]
    assert set(dated["customer_id"]) <= planted and len(dated) >= len(bad) - 1


def test_a_target_with_one_class_is_a_clear_error(ray_address: str, tmp_path: Path) -> None:
    path = tmp_path / "one-class.parquet"
    frame = _frame()
    frame["churned"] = 0
    frame.to_parquet(path)
    message = _cli_error(tmp_path, _config(path, tmp_path, "parquet"))
    print(f"\none-class target: {ROWS} rows in, run refused: {_error_line(message)}")
    assert "target 'churned' holds only 0" in message and "two classes" in message
