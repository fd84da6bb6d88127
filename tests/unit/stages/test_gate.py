"""Unit tests for pipelines.stages.gate: every branch of the champion decision."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from pipelines.stages.gate import GateDecision, decide, default_gate_metric, higher_is_better


def gate(
    new: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    metric: str = "roc_auc",
    margin: float = 0.0,
    slice_floor: float | None = None,
    slices: Mapping[str, Any] | None = None,
    failed: Sequence[str] = (),
) -> GateDecision:
    return decide(new, champion, metric=metric, margin=margin, slice_floor=slice_floor,
                  new_slices=slices or {}, failed_checks=list(failed))


def assert_promoted(d: GateDecision) -> None:
    assert d.promote and d.alias == "champion", d.reason


def assert_challenger(d: GateDecision) -> None:
    assert not d.promote and d.alias == "challenger", d.reason


def test_default_gate_metric_per_task() -> None:
    assert default_gate_metric("binary") == "roc_auc"
    assert default_gate_metric("multiclass") == "f1_macro"
    assert default_gate_metric("regression") == "rmse"
    with pytest.raises(ValueError, match="ranking"):
        default_gate_metric("ranking")


@pytest.mark.parametrize("metric", ["rmse", "mae", "mape", "log_loss"])
def test_lower_is_better_metrics(metric: str) -> None:
    assert not higher_is_better(metric)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "f1_macro", "accuracy", "r2", "f1_class_a"])
def test_higher_is_better_metrics(metric: str) -> None:
    assert higher_is_better(metric)


def test_no_champion_promotes() -> None:
    d = gate({"roc_auc": 0.7}, None)
    assert_promoted(d)
    assert "no champion yet" in d.reason and "0.7" in d.reason


def test_failed_checks_block_promotion_even_without_champion() -> None:
    d = gate({"roc_auc": 0.9}, None, failed=["latency", "finite"])
    assert_challenger(d)
    assert "latency, finite" in d.reason


def test_failed_checks_block_a_better_model() -> None:
    d = gate({"roc_auc": 0.9}, {"roc_auc": 0.8}, failed=["deterministic"])
    assert_challenger(d)
    assert "deterministic" in d.reason and "0.9" in d.reason and "0.8" in d.reason


def test_better_model_is_promoted_and_reason_states_both_values() -> None:
    d = gate({"roc_auc": 0.83}, {"roc_auc": 0.80}, margin=0.01)
    assert_promoted(d)
    assert "0.83" in d.reason and "0.8" in d.reason and "margin 0.01" in d.reason


def test_worse_model_is_challenger() -> None:
    d = gate({"roc_auc": 0.78}, {"roc_auc": 0.80})
    assert_challenger(d)
    assert "worse by 0.02" in d.reason and "0.78" in d.reason and "0.8" in d.reason


def test_improvement_below_margin_is_challenger() -> None:
    d = gate({"roc_auc": 0.805}, {"roc_auc": 0.80}, margin=0.01)
    assert_challenger(d)
    assert "better by only" in d.reason


def test_improvement_exactly_the_margin_promotes_despite_float_noise() -> None:
    assert 0.85 - 0.80 < 0.05  # the float subtraction falls just short
    assert_promoted(gate({"roc_auc": 0.85}, {"roc_auc": 0.80}, margin=0.05))


def test_tie_is_not_promoted_with_zero_margin() -> None:
    d = gate({"roc_auc": 0.8}, {"roc_auc": 0.8}, margin=0.0)
    assert_challenger(d)
    assert "no better" in d.reason


def test_any_strict_improvement_promotes_with_zero_margin() -> None:
    assert_promoted(gate({"roc_auc": 0.8001}, {"roc_auc": 0.8}, margin=0.0))


def test_lower_is_better_metric_direction() -> None:
    assert_promoted(gate({"rmse": 9.0}, {"rmse": 10.0}, metric="rmse", margin=0.5))
    assert_challenger(gate({"rmse": 9.8}, {"rmse": 10.0}, metric="rmse", margin=0.5))
    worse = gate({"log_loss": 0.5}, {"log_loss": 0.4}, metric="log_loss")
    assert_challenger(worse)
    assert "worse by 0.1" in worse.reason


def test_nan_new_metric_is_not_promoted() -> None:
    d = gate({"roc_auc": math.nan}, None)
    assert_challenger(d)
    assert "nan" in d.reason


def test_missing_new_metric_is_not_promoted() -> None:
    d = gate({"accuracy": 0.9}, {"roc_auc": 0.8})
    assert_challenger(d)
    assert "not among its metrics" in d.reason


def test_nan_champion_metric_is_not_promoted() -> None:
    d = gate({"roc_auc": 0.9}, {"roc_auc": math.nan})
    assert_challenger(d)
    assert "champion's roc_auc" in d.reason and "0.9" in d.reason
    assert_challenger(gate({"roc_auc": 0.9}, {}))


def slices(**values: float | None) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, float]] = {}
    for name, v in values.items():
        out[name] = {"rows": 50.0} if v is None else {"rows": 50.0, "roc_auc": v, "rmse": v}
    return {"plan": out}


def test_slice_below_floor_blocks_and_is_named() -> None:
    d = gate({"roc_auc": 0.9}, {"roc_auc": 0.8}, slice_floor=0.7, slices=slices(basic=0.9, pro=0.65))
    assert_challenger(d)
    assert "plan=pro" in d.reason and "0.65" in d.reason and "plan=basic" not in d.reason
    assert "0.9" in d.reason and "0.8" in d.reason


def test_slice_floor_applies_without_champion() -> None:
    assert_challenger(gate({"roc_auc": 0.9}, None, slice_floor=0.7, slices=slices(pro=0.5)))


def test_small_and_undefined_slices_are_not_judged() -> None:
    d = gate({"roc_auc": 0.9}, {"roc_auc": 0.8}, slice_floor=0.7,
             slices=slices(basic=0.9, tiny=None, single_class=math.nan))
    assert_promoted(d)


def test_slices_ignored_without_floor() -> None:
    assert_promoted(gate({"roc_auc": 0.9}, {"roc_auc": 0.8}, slice_floor=None, slices=slices(pro=0.1)))


def test_lower_is_better_slice_above_floor_blocks() -> None:
    d = gate({"rmse": 1.0}, {"rmse": 2.0}, metric="rmse", slice_floor=3.0,
             slices=slices(basic=2.5, pro=4.0))
    assert_challenger(d)
    assert "above the floor" in d.reason and "plan=pro" in d.reason
    assert_promoted(gate({"rmse": 1.0}, {"rmse": 2.0}, metric="rmse", slice_floor=3.0,
                         slices=slices(basic=2.5)))
