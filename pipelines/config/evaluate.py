"""The ``evaluate`` section: test-set evaluation, pre-production checks, the champion gate."""

from __future__ import annotations

from pydantic import Field

from pipelines.config.base import _Section

__all__ = ["ChecksConfig", "EvaluateConfig", "GateConfig"]


class GateConfig(_Section):
    """When a new model may replace the current champion."""

    metric: str | None = Field(
        None, description="Test metric compared with the champion's on the same test rows. "
        "Default: roc_auc (binary), f1_macro (multiclass), rmse (regression).",
    )
    margin: float = Field(
        0.0, ge=0, description="The new model must beat the champion by at least this much.",
    )
    slice_floor: float | None = Field(
        None, description="No slice's gate metric may fall below this (lower-is-better metrics: "
        "rise above it).",
    )


class ChecksConfig(_Section):
    """Pre-production checks of model outputs, run before promotion."""

    sample_rows: int = Field(200, ge=1, description="Test rows the checks predict on.")
    latency_budget_ms: float = Field(
        100.0, gt=0, description="Budget for one single-row prediction (median of repeats).",
    )


class EvaluateConfig(_Section):
    """Test-set evaluation, plots, pre-production checks and the champion gate."""

    threshold: float = Field(0.5, gt=0, lt=1, description="Decision threshold (binary).")
    slices: list[str] = Field(
        default_factory=list, description="Raw columns to report per-value (slice) metrics on.",
    )
    plots: bool = Field(True, description="Save ROC/PR/confusion/calibration/residual plots.")
    explain_rows: int = Field(
        500, ge=0, description="Test rows the attribution summary plot explains (TreeSHAP for "
        "XGBoost, coefficient x value for linear; not drawn for the MLP). 0: no such plot.",
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
