"""Unit tests of contract inference and the quality report, without Ray."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from pipelines.config import ProfileConfig, parse_config
from pipelines.contract import (
    _round_out,
    contract_yaml,
    find_unique_key,
    infer_contract,
    key_candidates,
)
from pipelines.demo import generate_demo_frame
from pipelines.profile import profile_tables
from pipelines.quality import build_report, render_html, write_report
from pipelines.stages.validate import COLUMN_COLUMN, REASON_COLUMN, RULE_COLUMN, check_batch


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return generate_demo_frame(2000, 3)


def _profile(df: pd.DataFrame) -> object:
    t = pa.Table.from_pandas(df, preserve_index=False)
    return profile_tables([t.slice(0, 700), t.slice(700)])


def test_inferred_rules_follow_the_data(demo: pd.DataFrame) -> None:
    schema = infer_contract(_profile(demo), ProfileConfig(range_margin=0.1))  # type: ignore[arg-type]
    c = schema.columns
    assert c["churned"].type == "int" and c["churned"].nullable is False
    assert c["churned"].min == 0 and c["churned"].max == 2  # [0, 1] widened, whole numbers
    assert c["autopay"].type == "bool"
    assert c["signup_date"].type == "datetime"
    assert c["plan"].allowed == ["basic", "premium", "standard"]  # variants collapse
    assert c["plan"].nullable is True  # the demo leaves some plans out
    assert c["customer_id"].type == "string" and c["customer_id"].allowed is None
    tenure = demo["tenure_months"]
    assert c["tenure_months"].min is not None and c["tenure_months"].min <= tenure.min()
    assert c["tenure_months"].max is not None and c["tenure_months"].max >= tenure.max()


def test_round_trip_the_data_passes_and_a_broken_copy_is_caught(demo: pd.DataFrame) -> None:
    profile = _profile(demo)
    text = contract_yaml(infer_contract(profile), profile, "demo.parquet")  # type: ignore[arg-type]
    loaded = yaml.safe_load(text)
    cfg = parse_config({"name": "t", "source": {"kind": "demo"}, "target": "churned", **loaded})
    assert set(cfg.schema_.columns) == set(demo.columns)

    passed = check_batch(demo, cfg.schema_, "churned")
    assert passed[REASON_COLUMN].isna().all()

    broken = demo.head(5).copy()
    broken["tenure_months"] = broken["tenure_months"].astype(object)
    broken.loc[broken.index[0], "tenure_months"] = -1000.0
    broken.loc[broken.index[1], "plan"] = "platinum"
    broken.loc[broken.index[2], "customer_id"] = None
    broken.loc[broken.index[3], "tenure_months"] = "forty"
    out = check_batch(broken, cfg.schema_, "churned")
    got = list(zip(out[COLUMN_COLUMN].fillna("-"), out[RULE_COLUMN].fillna("-"), strict=True))
    assert got == [("tenure_months", "min"), ("plan", "allowed"), ("customer_id", "nullable"),
                   ("tenure_months", "type"), ("-", "-")]


def test_yaml_has_review_notes_and_anomalies(demo: pd.DataFrame) -> None:
    profile = _profile(demo)
    text = contract_yaml(infer_contract(profile, unique_key=["customer_id"]), profile,  # type: ignore[arg-type]
                         "data/x.parquet", key_repeats={"order_id": 3})
    assert text.startswith("# Data contract inferred by `raypipe profile` from data/x.parquet")
    assert "regex" in text and "order_id looks like a key, but 3 rows repeat one of its values" in text
    assert "customer_id: (almost) every value is distinct" in text
    assert yaml.safe_load(text)["schema"]["unique_key"] == ["customer_id"]


def test_key_candidates_prefer_id_columns() -> None:
    p = profile_tables([pa.table({"name": [f"n{i}" for i in range(50)],
                                  "order_id": list(range(50)),
                                  "city": ["a", "b"] * 25,
                                  "maybe": [f"m{i}" if i else None for i in range(50)]})])
    assert key_candidates(p) == ["order_id", "name"]


@pytest.mark.parametrize(("x", "up", "want"), [(123.456, True, 124.0), (123.456, False, 123.0),
                                                (-8.21, False, -8.22), (-8.215, False, -8.22),
                                                (0.012345, True, 0.0124), (0.0, True, 0.0)])
def test_bounds_are_rounded_away_from_the_data(x: float, up: bool, want: float) -> None:
    assert _round_out(x, up) == pytest.approx(want)


def test_report_json_and_html(tmp_path: Path) -> None:
    p = profile_tables([pa.table({"a<b": ["<script>", "x", "x"], "n": [1.0, None, 3.0]})])
    report = build_report("data/<odd>.csv", p)
    json_path, html_path = write_report(report, tmp_path / "r")
    assert json_path.read_text().startswith("{")
    page = html_path.read_text()
    assert "&lt;script&gt;" in page and "<script>" not in page  # values are escaped
    assert "a&lt;b" in page and "Anomalies" in page
    assert render_html(report) == page


def test_an_exactly_counted_key_is_decided_without_a_shuffle() -> None:
    p = profile_tables([pa.table({"order_id": [1, 2, 3, 3], "sku_id": ["a", "b", "c", "d"]})])
    # ds is never touched: both candidates have fewer values than the exact limit
    assert find_unique_key(None, p) == (["sku_id"], {})  # type: ignore[arg-type]
    p = profile_tables([pa.table({"order_id": [*range(99), 5]})])
    assert find_unique_key(None, p) == ([], {"order_id": 1})  # type: ignore[arg-type]
