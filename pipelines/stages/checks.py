"""Pre-production checks of a model's outputs, run on a sample of test rows before promotion.

Each check calls the model through a plain ``predict(frame) -> frame`` function, so the same
checks apply to the pyfunc model, the Serve app's predictor or a test double. A model that
raises, or returns something unusable, fails the checks that needed its output, with the error
in the detail; :func:`run_model_checks` itself does not raise for it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN
from pipelines.stages.evaluate import _label_text, _labels

__all__ = ["CHECK_NAMES", "CheckResult", "Predict", "failed_checks", "run_model_checks"]

Predict = Callable[[pd.DataFrame], pd.DataFrame]
"""Raw rows in, one output row per input row (``prediction`` and probability columns) out."""

CHECK_NAMES = (
    "finite",
    "types_and_range",
    "probabilities_sum_to_one",
    "deterministic",
    "column_order_independent",
    "single_row_equals_batch",
    "latency",
)
"""The checks :func:`run_model_checks` runs, in order."""

_SUM_TOLERANCE = 1e-6
_SINGLE_ROWS = 20
_LATENCY_REPEATS = 20
# A one-row frame may take another vectorised code path than a batch, which can change the
# last bits of a float; anything beyond this is a real difference.
_SINGLE_ROW_RTOL = 1e-9
_SINGLE_ROW_ATOL = 1e-12
_MAX_LISTED = 5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: its name, whether it passed and what was measured or found."""

    name: str
    passed: bool
    detail: str


class _OutputError(RuntimeError):
    """The model raised, or returned something that is not a usable prediction frame."""


def failed_checks(results: Sequence[CheckResult]) -> list[str]:
    """Names of the checks that did not pass, in run order."""
    return [r.name for r in results if not r.passed]


def run_model_checks(
    predict: Predict,
    sample: pd.DataFrame,
    *,
    task: str,
    classes: Sequence[Any] | None,
    latency_budget_ms: float,
) -> list[CheckResult]:
    """Run every check of :data:`CHECK_NAMES` on ``sample`` and return their results.

    - ``finite``: no missing prediction; numeric predictions and probabilities are finite.
    - ``types_and_range``: one output row per input row; classification predictions are among
      ``classes`` and probabilities within [0, 1]; regression predictions are numeric.
    - ``probabilities_sum_to_one``: multiclass ``probability_<class>`` columns sum to 1 within
      1e-6 on every row (binary and regression: nothing to check).
    - ``deterministic``: predicting the same rows twice gives identical output.
    - ``column_order_independent``: the input columns in reverse order give identical output.
    - ``single_row_equals_batch``: each of the first 20 rows predicted alone gives its batch
      output (floats within a relative 1e-9).
    - ``latency``: the median of 20 single-row predictions, after one warm-up call, is within
      ``latency_budget_ms``; the detail gives the measured milliseconds.

    Raises:
        ValueError: ``sample`` has no rows (the checks would prove nothing).
    """
    if sample.empty:
        raise ValueError("the check sample has no rows; checks need at least one test row")
    sample = sample.reset_index(drop=True)
    batch: list[pd.DataFrame] = []

    def base() -> pd.DataFrame:
        # Predicted once, on first use, and shared by the checks; a failure is re-raised to each.
        if not batch:
            batch.append(_predict(predict, sample))
        return batch[0]

    steps: dict[str, Callable[[], tuple[bool, str]]] = {
        "finite": lambda: _finite(base()),
        "types_and_range": lambda: _types_and_range(base(), task, classes),
        "probabilities_sum_to_one": lambda: _sums_to_one(base(), task, classes),
        "deterministic": lambda: _same_output(base(), _predict(predict, sample), "a second call"),
        "column_order_independent": lambda: _column_order(predict, sample, base()),
        "single_row_equals_batch": lambda: _single_rows(predict, sample, base()),
        "latency": lambda: _latency(predict, sample, latency_budget_ms),
    }
    return [_run(name, steps[name]) for name in CHECK_NAMES]


def _run(name: str, step: Callable[[], tuple[bool, str]]) -> CheckResult:
    try:
        passed, detail = step()
    except Exception as err:  # a check fails, it never stops the others
        return CheckResult(name, False, f"{type(err).__name__}: {err}")
    return CheckResult(name, passed, detail)


def _predict(predict: Predict, rows: pd.DataFrame) -> pd.DataFrame:
    try:
        out = predict(rows)
    except Exception as err:
        raise _OutputError(f"predict raised {type(err).__name__}: {err}") from err
    if not isinstance(out, pd.DataFrame):
        raise _OutputError(f"predict returned {type(out).__name__}, not a pandas DataFrame")
    if len(out) != len(rows):
        raise _OutputError(f"predict returned {len(out)} rows for {len(rows)} input rows")
    if PREDICTION_COLUMN not in out.columns:
        raise _OutputError(f"predict output lacks the {PREDICTION_COLUMN!r} column; "
                           f"it has {list(map(str, out.columns))}")
    return out.reset_index(drop=True)


def _probability_columns(out: pd.DataFrame) -> list[str]:
    return [c for c in out.columns if str(c).startswith(PROBABILITY_COLUMN)]


def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(map(str, items[:_MAX_LISTED]))
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# --------------------------------------------------------------------------- checks


def _finite(out: pd.DataFrame) -> tuple[bool, str]:
    problems = []
    for col in [PREDICTION_COLUMN, *_probability_columns(out)]:
        values = out[col]
        if _is_number(values):
            bad = int((~np.isfinite(values.to_numpy(dtype=float))).sum())
        else:
            bad = int(values.isna().sum())
        if bad:
            problems.append(f"{col}: {bad} of {len(out)} rows missing or not finite")
    if problems:
        return False, "; ".join(problems)
    return True, f"all {len(out)} rows finite"


def _types_and_range(
    out: pd.DataFrame, task: str, classes: Sequence[Any] | None
) -> tuple[bool, str]:
    pred = out[PREDICTION_COLUMN]
    if task == "regression":
        if not _is_number(pred):
            return False, f"regression predictions are {pred.dtype}, not numeric"
        return True, f"predictions are {pred.dtype}"
    problems = []
    labels = [_label_text(c) for c in classes or []]
    unknown = sorted(set(_labels(pred)) - set(labels))
    if unknown:
        problems.append(f"predicted labels not among the classes {labels}: {_listed(unknown)}")
    expected = [PROBABILITY_COLUMN]
    if task == "multiclass":
        expected += [f"{PROBABILITY_COLUMN}_{c}" for c in classes or []]
    present = {str(c) for c in out.columns}
    missing = [c for c in expected if c not in present]
    if missing:
        problems.append(f"missing probability columns {missing}")
    for col in _probability_columns(out):
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float)
        outside = ~((values >= 0.0) & (values <= 1.0))
        if outside.any():
            problems.append(f"{col}: {int(outside.sum())} of {len(out)} values outside [0, 1]")
    if problems:
        return False, "; ".join(problems)
    return True, f"labels among {len(labels)} classes, probabilities within [0, 1]"


def _sums_to_one(out: pd.DataFrame, task: str, classes: Sequence[Any] | None) -> tuple[bool, str]:
    if task != "multiclass":
        return True, ("binary: one probability column, the other class has 1 - p"
                      if task == "binary" else "regression: no probabilities")
    cols = [f"{PROBABILITY_COLUMN}_{c}" for c in classes or []]
    missing = [c for c in cols if c not in out.columns]
    if missing or not cols:
        return False, f"missing probability columns {missing or cols}"
    sums = out[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float).sum(axis=1)
    gap = np.abs(sums - 1.0)
    bad = ~(gap <= _SUM_TOLERANCE)
    if bad.any():
        worst = float(sums[np.nanargmax(np.where(np.isnan(gap), np.inf, gap))])
        return False, (f"{int(bad.sum())} of {len(out)} rows do not sum to 1 ± {_SUM_TOLERANCE:g} "
                       f"(worst sum {worst:.6g})")
    return True, f"all {len(out)} rows sum to 1 ± {_SUM_TOLERANCE:g}"


def _column_order(predict: Predict, sample: pd.DataFrame, base: pd.DataFrame) -> tuple[bool, str]:
    reordered = sample[list(reversed(sample.columns))]
    return _same_output(base, _predict(predict, reordered), "the input columns reversed")


def _single_rows(predict: Predict, sample: pd.DataFrame, base: pd.DataFrame) -> tuple[bool, str]:
    rows = min(_SINGLE_ROWS, len(sample))
    differing = []
    for i in range(rows):
        alone = _predict(predict, sample.iloc[[i]])
        if _difference(base.iloc[[i]].reset_index(drop=True), alone, exact=False):
            differing.append(i)
    if differing:
        return False, (f"{len(differing)} of {rows} rows predicted alone differ from their batch "
                       f"prediction (rows {_listed(differing)})")
    return True, f"{rows} rows predicted alone equal their batch predictions"


def _latency(predict: Predict, sample: pd.DataFrame, budget_ms: float) -> tuple[bool, str]:
    singles = [sample.iloc[[i % len(sample)]] for i in range(_LATENCY_REPEATS)]
    _predict(predict, singles[0])  # warm-up: lazy initialisation is not per-request latency
    timings = []
    for row in singles:
        start = time.perf_counter()
        _predict(predict, row)
        timings.append((time.perf_counter() - start) * 1000.0)
    median = statistics.median(timings)
    detail = (f"median {median:.2f} ms (max {max(timings):.2f} ms) over {len(timings)} single-row "
              f"predictions; budget {budget_ms:g} ms")
    return median <= budget_ms, detail


# --------------------------------------------------------------------------- comparing outputs


def _same_output(base: pd.DataFrame, other: pd.DataFrame, what: str) -> tuple[bool, str]:
    diff = _difference(base, other, exact=True)
    if diff:
        return False, f"output differs with {what}: {diff}"
    return True, f"identical output for {len(base)} rows with {what}"


def _difference(a: pd.DataFrame, b: pd.DataFrame, *, exact: bool) -> str:
    """What differs between two outputs ("" when equal; missing values equal each other)."""
    if list(a.columns) != list(b.columns):
        return f"columns {list(a.columns)} vs {list(b.columns)}"
    for col in a.columns:
        x, y = a[col], b[col]
        if _is_number(x) and _is_number(y):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            if exact:
                same = (xv == yv) | (np.isnan(xv) & np.isnan(yv))
            else:
                same = np.isclose(xv, yv, rtol=_SINGLE_ROW_RTOL, atol=_SINGLE_ROW_ATOL,
                                  equal_nan=True)
        else:
            xv, yv = _labels(x), _labels(y)
            same = xv == yv
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            return (f"{col} differs in {int((~same).sum())} of {len(a)} rows "
                    f"(first at row {first}: {xv[first]!r} vs {yv[first]!r})")
    return ""
