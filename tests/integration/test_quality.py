"""Contract validation across blocks, the streaming profile and the run's quality report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pyarrow as pa
import pytest
from mlflow import MlflowClient

from pipelines.config import ColumnContract, SchemaConfig
from pipelines.profile import profile_dataset, profile_tables, profile_views, select_columns
from pipelines.quality import PROFILE_ARTIFACT
from pipelines.stages.validate import (
    QUARANTINE_COLUMNS,
    REASON_COLUMN,
    RULE_COLUMN,
    ContractError,
    ReasonCount,
    passed_rows,
    validate,
)

pytestmark = pytest.mark.integration


def _blocks(df: pd.DataFrame, n: int) -> Any:
    import ray.data

    size = -(-len(df) // n)
    return ray.data.from_pandas([df.iloc[i:i + size] for i in range(0, len(df), size)])


def test_unique_key_across_blocks_keeps_one_valid_row_per_key(ray_address: str) -> None:
    n = 240
    df = pd.DataFrame({"order": [i % 60 for i in range(n)],  # every key in all 4 blocks
                       # the last 10 rows miss a key part: not checked for uniqueness
                       "part": [None if i >= 230 else "a" if i % 120 < 60 else "b"
                                for i in range(n)],
                       "amount": [-1.0 if i < 10 else float(i) for i in range(n)],
                       "y": [i % 2 for i in range(n)]})
    schema = SchemaConfig(unique_key=["order", "part"], max_quarantine_fraction=1.0,
                          columns={"amount": ColumnContract(type="float", min=0)})
    result = validate(_blocks(df, 4), schema, "y")

    assert result.rows_in == n == result.rows_valid + result.rows_quarantined
    valid = result.valid.to_pandas()
    keyed = valid[valid["part"].notna()]
    assert not keyed.duplicated(["order", "part"]).any()
    assert len(keyed) == 120  # 60 orders x 2 parts, each kept once
    assert valid["part"].isna().sum() == 10
    assert (valid["amount"] >= 0).all()  # a key's first row broke a rule: a later one is kept
    bad = result.quarantined.to_pandas()
    assert list(bad.columns) == [*df.columns, *QUARANTINE_COLUMNS]  # every input column kept
    assert len(bad) == n - 130
    assert result.reasons == [ReasonCount("order+part", "unique_key", 100),
                              ReasonCount("amount", "min", 10)]
    assert set(bad[RULE_COLUMN]) == {"unique_key", "min"}


def test_threshold_failure_names_share_threshold_and_reasons(ray_address: str) -> None:
    df = pd.DataFrame({"x": [-1.0] * 30 + [1.0] * 70, "code": ["AB"] * 90 + ["zz"] * 10,
                       "y": [1] * 100})
    schema = SchemaConfig(max_quarantine_fraction=0.1, columns={
        "x": ColumnContract(type="float", min=0),
        "code": ColumnContract(type="string", regex="[A-Z]+")})
    with pytest.raises(ContractError) as info:
        validate(_blocks(df, 2), schema, "y")
    msg = str(info.value)
    assert "40 of 100 rows (40.0%)" in msg and "max_quarantine_fraction=10.0%" in msg
    assert "x [min]: 30 rows; code [regex]: 10 rows" in msg


def test_profile_on_ray_matches_profile_of_the_same_tables(ray_address: str) -> None:
    df = pd.DataFrame({"n": [float(i) if i % 7 else None for i in range(500)],
                       "s": [["a", "b", "c"][i % 3] for i in range(500)]})
    on_ray = profile_dataset(_blocks(df, 5))
    local = profile_tables([pa.Table.from_pandas(df, preserve_index=False)])
    for name in ("n", "s"):
        a, b = on_ray.columns[name], local.columns[name]
        assert (a.count, a.nulls, a.distinct, a.min, a.max) == (b.count, b.nulls, b.distinct,
                                                                  b.min, b.max)
        assert a.top_values == b.top_values
    assert on_ray.columns["n"].mean == pytest.approx(local.columns["n"].mean)


def test_one_pass_profiles_of_the_input_and_the_passed_rows_are_the_two_passes(
        ray_address: str) -> None:
    # The quality report profiles the checked input and the rows that passed as two views
    # of one pass; each must be what a pass over that data set alone gives.
    from functools import partial

    df = pd.DataFrame({"x": [-1.0 if i % 9 == 0 else float(i) for i in range(600)],
                       "code": [["AB", "CD", "zz", None][i % 4] for i in range(600)],
                       "y": [i % 2 for i in range(600)]})
    schema = SchemaConfig(max_quarantine_fraction=1.0, columns={
        "x": ColumnContract(type="float", min=0),
        "code": ColumnContract(type="string", regex="[A-Z]+", nullable=False)})
    result = validate(_blocks(df, 3), schema, "y")
    assert result.checked is not None and 0 < result.rows_valid < result.rows_in
    columns = list(df.columns)
    views = profile_views(result.checked, {
        "input": partial(select_columns, columns=columns),
        "passed": partial(passed_rows, schema=schema)})
    alone = {"input": profile_dataset(result.checked, columns=columns),
             "passed": profile_dataset(result.valid)}
    assert views["input"].rows == result.rows_in and views["passed"].rows == result.rows_valid
    for name in ("input", "passed"):
        assert views[name].model_dump() == alone[name].model_dump(), name


@pytest.mark.slow  # the session's whole demo pipeline run (~40 s): not in the inner loop
def test_run_logs_counts_report_and_training_profile(trained: dict[str, Any]) -> None:
    cfg, s = trained["cfg"], trained["summary"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    run = client.get_run(s.run_id)
    m = run.data.metrics
    assert m["rows_in"] == m["rows_passed"] + m["rows_quarantined"] == 3000
    assert m["quarantined_fraction"] == pytest.approx(m["rows_quarantined"] / 3000)
    names = {a.path for a in client.list_artifacts(s.run_id, "quality")}
    assert names == {"quality/quality_report.json", "quality/quality_report.html"}
    report = json.loads(Path(client.download_artifacts(s.run_id, "quality/quality_report.json"))
                        .read_text())
    assert report["validation"]["rows_quarantined"] == s.counts["rows_quarantined"]
    assert {r["column"] for r in report["validation"]["reasons"]} >= {"tenure_months"}
    assert any(a["kind"] == "outliers" for a in report["profile"]["anomalies"])
    # the training profile is found from the registered model version's run
    version = client.get_model_version(cfg.model_name, s.model_version)
    assert client.get_run(version.run_id).data.tags["raypipe.training_profile"] == PROFILE_ARTIFACT
    training = json.loads(Path(client.download_artifacts(version.run_id, PROFILE_ARTIFACT))
                          .read_text())
    assert training["rows"] == s.counts["rows_valid"]
    assert training["columns"]["tenure_months"]["min"] >= 0  # the contract's min: 0 held
    assert training["columns"]["tenure_months"]["kll_sketch"]


def test_failed_threshold_still_writes_quarantine_and_report(ray_address: str,
                                                             tmp_path: Path) -> None:
    from pipelines.config import parse_config
    from pipelines.quality import validate_and_report
    from pipelines.tracking import tracking_scope

    df = pd.DataFrame({"tenure_months": [-5.0, 10.0, 20.0], "churned": [0, 1, 0]})
    cfg = parse_config({"name": "strict", "source": {"kind": "demo"}, "target": "churned",
                        "runtime": {"work_dir": str(tmp_path)},
                        "schema": {"max_quarantine_fraction": 0.0, "columns": {
                            "tenure_months": {"type": "float", "min": 0}}}})
    with (tracking_scope(cfg), mlflow.start_run() as run,
          pytest.raises(ContractError, match="tenure_months \\[min\\]: 1 rows")):
        validate_and_report(_blocks(df, 1), cfg, tmp_path / "q", tmp_path / "report")
    quarantined = pd.read_parquet(tmp_path / "q")
    assert quarantined["tenure_months"].tolist() == [-5.0]
    assert quarantined[REASON_COLUMN].tolist() == ["tenure_months: below min 0.0: -5.0"]
    assert (tmp_path / "report" / "quality_report.html").is_file()
    with tracking_scope(cfg):
        logged = MlflowClient().get_run(run.info.run_id).data.metrics
    assert logged["rows_quarantined"] == 1 and logged["rows_in"] == 3
