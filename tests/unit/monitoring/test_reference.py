"""The reference profile and the per-block counting kernel, on pandas frames (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import ConfigError, MonitorConfig, RequestLogConfig, load_config
from pipelines.features.pipeline import CategoricalStats, FeaturePipeline, NumericStats
from pipelines.monitoring.drift import ColumnCounts, column_counts, compare, merge_counts
from pipelines.monitoring.monitor import _compare_all
from pipelines.monitoring.reference import build_reference, monitored_columns
from pipelines.monitoring.report import write_report
from pipelines.monitoring.window import WindowCounts, batch_counts, split_monitored


def _pipeline() -> FeaturePipeline:
    return FeaturePipeline(
        target="y", task="binary", classes=[0, 1],
        input_schema={"x": "float", "plan": "string", "flag": "bool", "seen": "datetime"},
        numeric={"x": NumericStats(fill=0.0)}, boolean=["flag"],
        categorical={"plan": CategoricalStats(fill="basic", vocab=["basic", "premium"])},
        datetime=["seen"], datetime_parts=["month"], ratios=[], encoding="ordinal",
        normalize_categories=True, feature_names=["x", "flag", "plan", "seen_month"],
    )


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(shift, 1, n), "plan": rng.choice(["basic", " Premium"], n),
        "flag": rng.random(n) < 0.3, "seen": pd.Timestamp("2024-01-01"),
        "prediction": rng.integers(0, 2, n), "probability": rng.random(n),
    })


def test_reference_profiles_every_input_but_datetimes_and_the_probability() -> None:
    ref = build_reference(_frame(2000, 0), _pipeline(), MonitorConfig())
    assert set(ref.features) == {"x", "plan", "flag"}
    assert ref.prediction_column == "probability" and ref.classes == [0, 1]
    assert ref.features["plan"].kind == "categorical"
    assert set(ref.features["plan"].counts) == {"basic", "premium"}  # spellings normalised
    assert set(ref.features["flag"].counts) == {"true", "false"}
    assert ref.features["x"].kind == "numeric" and len(ref.features["x"].edges) == 9
    assert monitored_columns(_pipeline(), ["seen"]) == {"seen": "datetime"}
    with pytest.raises(ValueError, match="nope"):
        monitored_columns(_pipeline(), ["nope"])


def test_inputs_kept_out_of_the_request_log_are_not_monitored_by_default() -> None:
    def monitored(**log: object) -> set[str]:
        cfg = MonitorConfig(request_log=RequestLogConfig(**log))  # type: ignore[arg-type]
        return set(build_reference(_frame(500, 0), _pipeline(), cfg).features)

    assert monitored(exclude_columns=["plan"]) == {"x", "flag"}
    assert monitored(include_columns=["x", "seen"]) == {"x"}  # datetimes stay out
    assert monitored(include_columns=[]) == set()
    # Named explicitly, a column is monitored anyway (a batch-output window has it).
    assert monitored_columns(_pipeline(), ["plan"], RequestLogConfig(exclude_columns=["plan"])) \
        == {"plan": "string"}


def test_a_window_without_a_monitored_column_is_compared_on_the_rest() -> None:
    ref = build_reference(_frame(2000, 0), _pipeline(), MonitorConfig())
    window = _frame(1000, 1).drop(columns=["plan"])  # kept out of the request log
    cut, not_logged = split_monitored(ref, set(window.columns))
    assert not_logged == ["plan"] and set(cut.features) == {"x", "flag"}
    row = batch_counts(window, reference=cut.model_dump_json())
    parts = json.loads(row["counts"][0])
    counts = WindowCounts(
        rows=1000, not_logged=not_logged,
        features={c: ColumnCounts.model_validate(parts[c]) for c in cut.features},
        prediction=ColumnCounts.model_validate(parts["__prediction__"]))
    features, prediction = _compare_all(ref, counts, MonitorConfig())
    assert [d.column for d in features] == ["x", "flag"] and prediction.flagged is False


def test_the_report_names_the_columns_not_logged(tmp_path: Path) -> None:
    summary = {"thresholds": {"psi_threshold": 0.2}, "model": {"name": "m", "version": "1"},
               "window": {"path": "logs/", "rows": 0, "since": None, "until": None},
               "reference_rows": 10, "created_at": "now", "flagged": False, "alerts": [],
               "not_logged": ["customer_id", "plan"]}
    page = write_report(summary, [], tmp_path / "report.html").read_text()
    assert "not checked for drift" in page and "customer_id, plan" in page


def test_block_kernel_counts_sum_to_the_whole_window_and_flag_the_shift() -> None:
    ref = build_reference(_frame(3000, 1), _pipeline(), MonitorConfig())
    window = _frame(3000, 2, shift=1.0)
    window["timestamp"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(
        np.arange(3000), unit="min")
    rows = [batch_counts(block, reference=ref.model_dump_json(), since="2026-11-01T10:00")
            for block in (window.iloc[i] for i in np.array_split(np.arange(3000), 4))]
    merged = ColumnCounts()
    for r in rows:
        merged = merge_counts(merged, ColumnCounts.model_validate(json.loads(r["counts"][0])["x"]))
    kept = window[window["timestamp"] >= pd.Timestamp("2026-11-01T10:00", tz="UTC")]
    assert sum(int(r["rows"][0]) for r in rows) == len(kept) == 3000 - 600
    assert merged == column_counts(kept["x"], ref.features["x"], True)
    counts = WindowCounts(rows=len(kept), features={"x": merged}, prediction=merged)
    drift = compare("x", ref.features["x"], counts.features["x"], psi_threshold=0.2,
                    p_value=0.01, min_effect=0.1, max_missing_increase=0.1,
                    max_new_category_rate=0.05, min_rows=100)
    assert drift.flagged and drift.statistic is not None and drift.statistic > 0.3


def test_monitor_settings_are_validated_by_field() -> None:
    cfg = load_config(None, ["monitor.request_log.sample_rate=0.1", "monitor.psi_threshold=0.3"])
    assert cfg.monitor.request_log.sample_rate == 0.1
    assert cfg.request_log_path.endswith("request_logs/raypipe-demo")
    with pytest.raises(ConfigError, match=r"monitor\.request_log\.sample_rate"):
        load_config(None, ["monitor.request_log.sample_rate=2"])
    with pytest.raises(ConfigError, match=r"monitor\.retrain\.overrides"):
        load_config(None, ["monitor.retrain.overrides=[no-equals-sign]"])
