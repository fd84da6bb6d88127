"""The champion gate: whether a newly trained model replaces the current champion.

A plain decision on numbers the runner has already computed (test metrics of the new model and
of the champion on the same test rows, slice metrics, failed pre-production checks); it never
talks to MLflow. The runner registers the model under the alias :class:`GateDecision` names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "LOWER_IS_BETTER",
    "GateDecision",
    "decide",
    "default_gate_metric",
    "higher_is_better",
]

CHAMPION = "champion"
CHALLENGER = "challenger"

LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss"})
"""Metrics (as :func:`pipelines.stages.evaluate.compute_metrics` names them) where less is better."""

_DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}
# Float noise in ``new - champion`` must not turn "better by exactly the margin" into a miss.
_TOLERANCE = 1e-12
_MAX_LISTED = 5


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict.

    Attributes:
        promote: whether the new model becomes the champion.
        alias: ``"champion"`` when promoted, else ``"challenger"``.
        reason: one sentence that names the gate metric with the new and the champion's value
            and, when not promoted, what blocked it.
    """

    promote: bool
    alias: str
    reason: str


def default_gate_metric(task: str) -> str:
    """The gate metric when the config names none: roc_auc, f1_macro or rmse by task."""
    try:
        return _DEFAULT_METRIC[task]
    except KeyError:
        raise ValueError(f"task must be one of {sorted(_DEFAULT_METRIC)}, got {task!r}") from None


def higher_is_better(metric: str) -> bool:
    """False for error metrics (rmse, mae, mape, log_loss), True for every other metric."""
    return metric not in LOWER_IS_BETTER


def _value(metrics: Mapping[str, float] | None, metric: str) -> float:
    if metrics is None or metric not in metrics or metrics[metric] is None:
        return math.nan
    return float(metrics[metric])


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def decide(
    new_metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    *,
    metric: str,
    margin: float,
    slice_floor: float | None,
    new_slices: Mapping[str, Mapping[str, Mapping[str, float]]],
    failed_checks: Sequence[str],
) -> GateDecision:
    """Decide whether the new model is promoted to champion or registered as challenger.

    The first rule that applies decides:

    1. A failed pre-production check blocks promotion, even without a champion.
    2. A gate metric that is missing or nan for the new model blocks promotion.
    3. ``slice_floor`` (when set): a slice value whose gate metric is below the floor (above it
       for lower-is-better metrics) blocks promotion. Slices too small to have metrics, or whose
       metric is undefined (nan, e.g. ROC AUC of a one-class slice), are not judged.
    4. Without a champion (``champion_metrics`` is None) the new model is promoted.
    5. A champion whose gate metric is missing or nan cannot be compared: not promoted.
    6. Otherwise the new model is promoted only if it strictly improves on the champion and by
       at least ``margin``: ``improvement > 0 and improvement >= margin``, where improvement is
       ``new - champion`` (``champion - new`` for lower-is-better metrics). A tie is never
       promoted, also with ``margin`` 0, so retraining an identical model changes nothing.

    The reason always states the new and the champion's value of ``metric``.
    """
    new = _value(new_metrics, metric)
    has_champion = champion_metrics is not None
    champ = _value(champion_metrics, metric)
    values = (f"{metric} {_fmt(new)} vs champion {_fmt(champ)}" if has_champion
              else f"{metric} {_fmt(new)}, no champion yet")

    if failed_checks:
        return _challenger(f"pre-production checks failed: {', '.join(failed_checks)} ({values})")
    if math.isnan(new):
        what = "is nan" if metric in new_metrics else "is not among its metrics"
        return _challenger(f"the new model's gate metric {metric} {what}; cannot judge it ({values})")
    if slice_floor is not None:
        below = _slices_past_floor(new_slices, metric, slice_floor)
        if below:
            side = "below" if higher_is_better(metric) else "above"
            listed = "; ".join(below[:_MAX_LISTED])
            more = f"; and {len(below) - _MAX_LISTED} more" if len(below) > _MAX_LISTED else ""
            return _challenger(f"slices {side} the floor {_fmt(slice_floor)}: {listed}{more} ({values})")
    if not has_champion:
        return GateDecision(True, CHAMPION, f"promoted: no champion yet ({values})")
    if math.isnan(champ):
        return _challenger(f"the champion's {metric} is nan or missing; cannot compare ({values})")

    improvement = new - champ if higher_is_better(metric) else champ - new
    if improvement > 0 and improvement >= margin - _TOLERANCE:
        return GateDecision(
            True, CHAMPION,
            f"promoted: {values}, better by {_fmt(improvement)} (margin {_fmt(margin)})",
        )
    if improvement > 0:
        why = f"better by only {_fmt(improvement)}, margin {_fmt(margin)} required"
    elif improvement == 0:
        why = "no better than the champion"
    else:
        why = f"worse by {_fmt(-improvement)}"
    return _challenger(f"{values}: {why}")


def _challenger(reason: str) -> GateDecision:
    return GateDecision(False, CHALLENGER, f"not promoted: {reason}")


def _slices_past_floor(
    slices: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str, floor: float
) -> list[str]:
    """``"column=value: metric v (n rows)"`` for every judged slice on the wrong side of the floor."""
    higher = higher_is_better(metric)
    found = []
    for column, values in slices.items():
        for value, result in values.items():
            v = result.get(metric)
            if v is None or math.isnan(v):
                continue
            if (v < floor) if higher else (v > floor):
                rows = result.get("rows")
                size = f" ({int(rows)} rows)" if rows is not None else ""
                found.append(f"{column}={value}: {metric} {_fmt(v)}{size}")
    return found
