"""Evaluate: test-split metrics, confusion matrix, per-slice metrics and plots.

Everything here except :func:`evaluate_predictions` is a plain function on a pandas frame that
holds the true label, ``prediction`` and (classification) the probability columns written by
:func:`pipelines.model.predict_frame`. Undefined metrics (a slice holding one class, no
positive rows, constant targets) come back as ``nan`` instead of raising.

Labels are compared as text after normalising numbers, so ``1``, ``1.0`` and ``True`` read from
Parquet match the ``1`` / ``True`` seen in training.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN
from pipelines.storage.location import StoragePath, Where, storage_path

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = [
    "MISSING_SLICE",
    "Evaluation",
    "compute_metrics",
    "confusion",
    "evaluate_frame",
    "evaluate_predictions",
    "slice_metrics",
]

logger = logging.getLogger(__name__)

MISSING_SLICE = "__missing__"
"""Slice value under which rows with a missing slice column are reported."""

_NAN = float("nan")
# Numeric slice columns with more distinct values than this are cut into quartiles.
_MAX_NUMERIC_SLICE_VALUES = 10
# Probabilities are clipped before the log so that a confident mistake costs a finite amount.
_EPS = 1e-15

_CLASSIFICATION_KEYS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss",
)
_REGRESSION_KEYS = ("rmse", "mae", "r2", "mape")


@dataclass
class Evaluation:
    """The result of evaluating one prediction frame.

    Attributes:
        metrics: metric name to value (see :func:`compute_metrics`).
        confusion: rows are true classes, columns predicted ones, in ``classes`` order;
            ``None`` for regression.
        slices: slice column -> slice value -> metrics of that subset plus ``rows``
            (see :func:`slice_metrics`).
        plots: PNG files written, empty when no plot directory was given.
    """

    metrics: dict[str, float]
    confusion: list[list[int]] | None
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    plots: list[StoragePath] = field(default_factory=list)


# --------------------------------------------------------------------------- labels


def _label_text(value: Any) -> str:
    """One spelling per label: ``1``, ``1.0``, ``np.int64(1)`` all become ``"1"``."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return MISSING_SLICE
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _labels(values: pd.Series) -> np.ndarray:
    """:func:`_label_text` of every value (computed once per distinct value)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = np.array([*(_label_text(u) for u in uniques), MISSING_SLICE], dtype=object)
    return texts[codes]


def _metric_suffix(label: str) -> str:
    """A class label as MLflow accepts it in a metric name (letters, digits, ``_-. /``)."""
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in label)


def _scored_rows(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows that have a true label: a row without one cannot be scored."""
    return frame.loc[frame[target].notna()]


def _proba_columns(frame: pd.DataFrame, classes: Sequence[Any]) -> list[str]:
    cols = [f"{PROBABILITY_COLUMN}_{c}" for c in classes]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(
            f"multiclass predictions lack probability columns {missing}; expected one "
            f"'{PROBABILITY_COLUMN}_<class>' column per class as pipelines.model.predict_frame writes"
        )
    return cols


def _class_probabilities(frame: pd.DataFrame, task: str, classes: Sequence[Any]) -> np.ndarray:
    """Binary: P(classes[1]) as a vector; multiclass: an (n, k) matrix in ``classes`` order."""
    if task == "binary":
        if PROBABILITY_COLUMN not in frame.columns:
            raise ValueError(f"binary predictions lack the {PROBABILITY_COLUMN!r} column")
        return frame[PROBABILITY_COLUMN].to_numpy(dtype=float)
    return frame[_proba_columns(frame, classes)].to_numpy(dtype=float)


# --------------------------------------------------------------------------- metrics


def compute_metrics(
    frame: pd.DataFrame, *, target: str, task: str, classes: Sequence[Any] | None
) -> dict[str, float]:
    """Metrics of one frame holding the true label, ``prediction`` and the probabilities.

    Rows whose true label is missing are left out.

    Classification (``task`` ``binary`` or ``multiclass``, ``classes`` in training order):
    ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present),
    ``precision``, ``recall``, ``f1``, per class ``precision_class_<c>``,
    ``recall_class_<c>``, ``f1_class_<c>``, ``roc_auc``, ``pr_auc`` (average precision) and
    ``log_loss``.

    - Binary: the positive class is ``classes[1]``; ``precision`` / ``recall`` / ``f1`` are
      those of the positive class, so ``nan`` when undefined (no predicted positives, no
      positive rows).
    - Multiclass: ``precision`` / ``recall`` / ``f1`` are macro averages (also reported as
      ``*_macro``) over the classes present in the labels or predictions, an undefined
      per-class precision counting as 0 there (scikit-learn's default), so that a model that
      never predicts a class is penalised. ``roc_auc`` and ``pr_auc`` are one-vs-rest macro
      averages over the classes for which they are defined.

    Regression: ``rmse``, ``mae``, ``r2`` (``nan`` for fewer than two rows or constant targets)
    and ``mape`` as a fraction, over the rows whose target is not zero (``nan`` if none).
    """
    frame = _scored_rows(frame, target)
    if task == "regression":
        return _regression_metrics(
            frame[target].to_numpy(dtype=float), frame[PREDICTION_COLUMN].to_numpy(dtype=float)
        )
    if task not in ("binary", "multiclass"):
        raise ValueError(f"task must be binary, multiclass or regression, got {task!r}")
    if not classes or (task == "binary" and len(classes) != 2):
        raise ValueError(f"{task} metrics need the training classes, got {classes!r}")
    with warnings.catch_warnings():
        # Undefined metrics are expected on small slices; they are reported as nan.
        warnings.simplefilter("ignore")
        return _classification_metrics(
            _labels(frame[target]),
            _labels(frame[PREDICTION_COLUMN]),
            _class_probabilities(frame, task, classes),
            [_label_text(c) for c in classes],
            binary=task == "binary",
        )


def _regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    if len(y) == 0:
        return dict.fromkeys(_REGRESSION_KEYS, _NAN)
    err = pred - y
    nonzero = y != 0
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if len(y) > 1 and ss_tot > 0 else _NAN,
        "mape": float(np.mean(np.abs(err[nonzero] / y[nonzero]))) if nonzero.any() else _NAN,
    }


def _classification_metrics(
    yt: np.ndarray, yp: np.ndarray, proba: np.ndarray, labels: list[str], *, binary: bool
) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    if len(yt) == 0:
        empty = dict.fromkeys(_CLASSIFICATION_KEYS, _NAN)
        for c in labels:
            empty |= {f"{k}_class_{_metric_suffix(c)}": _NAN for k in ("precision", "recall", "f1")}
        if not binary:
            empty |= {"precision_macro": _NAN, "recall_macro": _NAN, "f1_macro": _NAN}
        return empty

    # Labels never seen in training still count (as errors), after the known classes.
    extra = sorted((set(yt) | set(yp)) - set(labels))
    every = labels + extra
    precision, recall, f1, _ = precision_recall_fscore_support(
        yt, yp, labels=every, average=None, zero_division=np.nan
    )
    out: dict[str, float] = {
        "accuracy": float(np.mean(yt == yp)),
        "balanced_accuracy": _nanmean(recall),
    }
    for i, c in enumerate(labels):
        name = _metric_suffix(c)
        out[f"precision_class_{name}"] = float(precision[i])
        out[f"recall_class_{name}"] = float(recall[i])
        out[f"f1_class_{name}"] = float(f1[i])

    if binary:
        y_pos = (yt == labels[1]).astype(int)
        out |= {
            "precision": float(precision[1]),
            "recall": float(recall[1]),
            "f1": float(f1[1]),
            "roc_auc": _roc_auc(y_pos, proba),
            "pr_auc": _average_precision(y_pos, proba),
            "log_loss": _log_loss(np.column_stack([1 - proba, proba]), yt, labels),
        }
        return out

    seen = set(yt) | set(yp)
    present = [c for c in every if c in seen]
    macro = precision_recall_fscore_support(
        yt, yp, labels=present, average="macro", zero_division=0
    )
    out |= {
        "precision": float(macro[0]), "recall": float(macro[1]), "f1": float(macro[2]),
        "precision_macro": float(macro[0]),
        "recall_macro": float(macro[1]),
        "f1_macro": float(macro[2]),
        "roc_auc": _nanmean([_roc_auc((yt == c).astype(int), proba[:, i])
                             for i, c in enumerate(labels)]),
        "pr_auc": _nanmean([_average_precision((yt == c).astype(int), proba[:, i])
                            for i, c in enumerate(labels)]),
        "log_loss": _log_loss(proba, yt, labels),
    }
    return out


def _nanmean(values: Sequence[float] | np.ndarray) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else _NAN


def _roc_auc(y_pos: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of one positive-vs-rest problem; nan unless both outcomes occur."""
    from sklearn.metrics import roc_auc_score

    if not 0 < y_pos.sum() < len(y_pos) or not np.isfinite(score).all():
        return _NAN
    return float(roc_auc_score(y_pos, score))


def _average_precision(y_pos: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the PR curve); nan without a positive row."""
    from sklearn.metrics import average_precision_score

    if y_pos.sum() == 0 or not np.isfinite(score).all():
        return _NAN
    return float(average_precision_score(y_pos, score))


def _log_loss(proba: np.ndarray, yt: np.ndarray, labels: list[str]) -> float:
    """Mean negative log probability of the true class; nan if a label is not a known class."""
    index = {c: i for i, c in enumerate(labels)}
    codes = np.array([index.get(v, -1) for v in yt])
    if (codes < 0).any() or not np.isfinite(proba).all():
        return _NAN
    p_true = proba[np.arange(len(codes)), codes]
    return float(-np.mean(np.log(np.clip(p_true, _EPS, 1.0))))


def confusion(frame: pd.DataFrame, *, target: str, classes: Sequence[Any]) -> list[list[int]]:
    """Confusion matrix: ``matrix[i][j]`` counts rows of true ``classes[i]`` predicted ``classes[j]``.

    Rows with a missing label, or a true or predicted label outside ``classes``, are not counted.
    """
    labels = [_label_text(c) for c in classes]
    index = {c: i for i, c in enumerate(labels)}
    frame = _scored_rows(frame, target)
    true = pd.Series(_labels(frame[target])).map(index)
    pred = pd.Series(_labels(frame[PREDICTION_COLUMN])).map(index)
    known = (true.notna() & pred.notna()).to_numpy()
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(matrix, (true[known].astype(int).to_numpy(), pred[known].astype(int).to_numpy()), 1)
    return matrix.tolist()


# --------------------------------------------------------------------------- slices


def _range_names(edges: np.ndarray) -> list[str]:
    """``[lo, hi]`` for the first bin, ``(lo, hi]`` after, with enough digits to tell apart."""
    for digits in (4, 6, 10, 17):
        names = [
            f"{'[' if i == 0 else '('}{lo:.{digits}g}, {hi:.{digits}g}]"
            for i, (lo, hi) in enumerate(itertools.pairwise(edges))
        ]
        if len(set(names)) == len(names):
            break
    return names


def _slice_keys(values: pd.Series) -> tuple[pd.Series, list[str]]:
    """The slice value of each row (label, quartile range or ``__missing__``) and their order."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique(dropna=True) > _MAX_NUMERIC_SLICE_VALUES:
        nums = values.astype(float)
        edges = np.unique(np.nanquantile(nums, [0.0, 0.25, 0.5, 0.75, 1.0]))
        order = _range_names(edges)
        binned = pd.cut(nums, edges, labels=order, include_lowest=True)
        keys = binned.astype(object).where(binned.notna(), MISSING_SLICE)
    else:
        keys = pd.Series(_labels(values), index=values.index, dtype=object)
        distinct = list(values.dropna().unique())
        try:
            distinct.sort()
        except TypeError:
            distinct.sort(key=str)
        order = list(dict.fromkeys(_label_text(v) for v in distinct))
    present = set(keys)
    order = [v for v in order if v in present]
    if MISSING_SLICE in present:
        order.append(MISSING_SLICE)
    return keys, order


def slice_metrics(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    classes: Sequence[Any] | None,
    slices: Sequence[str],
    min_rows: int = 20,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per value of each slice column: ``{column: {value: {metric: value, "rows": n}}}``.

    Missing values form the ``__missing__`` slice. Numeric columns with more than ten distinct
    values are cut into quartiles, labelled by range (``"[0, 2.5]"``, ``"(2.5, 7]"``); other
    columns are sliced per value. A subset with fewer than ``min_rows`` scored rows is reported
    with ``rows`` only, since its metrics would be noise.

    Raises:
        ValueError: a slice column is not in ``frame``.
    """
    missing = [c for c in slices if c not in frame.columns]
    if missing:
        raise ValueError(f"slice columns {missing} are not in the predictions; "
                         f"available: {sorted(map(str, frame.columns))}")
    frame = _scored_rows(frame, target)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in slices:
        keys, order = _slice_keys(frame[column])
        per_value: dict[str, dict[str, float]] = {}
        for value in order:
            subset = frame.loc[(keys == value).to_numpy()]
            result: dict[str, float] = {"rows": float(len(subset))}
            if len(subset) >= min_rows:
                result |= compute_metrics(subset, target=target, task=task, classes=classes)
            per_value[value] = result
        out[column] = per_value
    return out


# --------------------------------------------------------------------------- evaluation


def evaluate_frame(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    classes: Sequence[Any] | None,
    slices: Sequence[str] = (),
    plot_dir: Where | None = None,
) -> Evaluation:
    """Metrics, confusion matrix, slice metrics and (when ``plot_dir`` is given) plots.

    Plots written to ``plot_dir`` (created if needed): ``roc_pr.png``, ``confusion.png`` and
    ``calibration.png`` for classification, ``residuals.png`` for regression. A frame with no
    scored rows gets no plots.
    """
    metrics = compute_metrics(frame, target=target, task=task, classes=classes)
    matrix = None if task == "regression" else confusion(frame, target=target, classes=classes or [])
    per_slice = slice_metrics(frame, target=target, task=task, classes=classes, slices=slices)
    plots: list[StoragePath] = []
    scored = _scored_rows(frame, target)
    if plot_dir is not None and len(scored):
        plots = _write_plots(scored, target=target, task=task, classes=classes,
                             matrix=matrix, plot_dir=storage_path(plot_dir))
    return Evaluation(metrics=metrics, confusion=matrix, slices=per_slice, plots=plots)


def _write_plots(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    classes: Sequence[Any] | None,
    matrix: list[list[int]] | None,
    plot_dir: StoragePath,
) -> list[StoragePath]:
    from pipelines.stages import plots

    if task == "regression":
        return [plots.residual_plot(frame[target].to_numpy(dtype=float),
                                    frame[PREDICTION_COLUMN].to_numpy(dtype=float),
                                    plot_dir / "residuals.png")]
    assert classes is not None and matrix is not None
    labels = [_label_text(c) for c in classes]
    yt, yp = _labels(frame[target]), _labels(frame[PREDICTION_COLUMN])
    proba = _class_probabilities(frame, task, classes)
    if task == "binary":
        hit, confidence = (yt == labels[1]).astype(int), proba
    else:
        # Multiclass calibration: is the predicted class right as often as its probability says?
        hit, confidence = (yt == yp).astype(int), frame[PROBABILITY_COLUMN].to_numpy(dtype=float)
    return [
        plots.roc_pr_curves(yt, proba, labels, plot_dir / "roc_pr.png"),
        plots.confusion_plot(matrix, labels, plot_dir / "confusion.png"),
        plots.calibration_plot(hit, confidence, plot_dir / "calibration.png"),
    ]


def evaluate_predictions(
    predictions: Dataset,
    *,
    target: str,
    task: str,
    classes: Sequence[Any] | None,
    slices: Sequence[str] = (),
    plot_dir: Where | None = None,
) -> Evaluation:
    """Evaluate a predictions Dataset in one Ray task and return the :class:`Evaluation`.

    Only the label, prediction, probability and slice columns leave storage. The task writes
    the plots to ``plot_dir`` itself, a local folder or an object-store prefix: on a cluster
    whose nodes share no disk it is in the object store, so nothing the driver needs is left
    on the task's node.

    Raises:
        ValueError: the label, ``prediction`` or a slice column is missing.
    """
    import ray

    available = predictions.columns()
    missing = [c for c in (target, PREDICTION_COLUMN, *slices) if c not in available]
    if missing:
        raise ValueError(f"predictions lack columns {missing}; available: {available}")
    keep = [target, PREDICTION_COLUMN, *slices]
    if task != "regression":
        keep += [PROBABILITY_COLUMN, *(f"{PROBABILITY_COLUMN}_{c}" for c in classes or [])]
    keep = [c for c in dict.fromkeys(keep) if c in available]
    narrow = predictions.select_columns(keep).materialize()
    out_dir = storage_path(plot_dir) if plot_dir is not None else None
    class_list = list(classes) if classes is not None else None
    slice_list = list(slices)

    @ray.remote(num_cpus=0.5)
    def _evaluate(ds: Dataset) -> Evaluation:
        return evaluate_frame(ds.to_pandas(), target=target, task=task, classes=class_list,
                              slices=slice_list, plot_dir=out_dir)

    return ray.get(_evaluate.remote(narrow))
