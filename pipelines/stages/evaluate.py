"""Evaluate: test-split metrics, confusion matrix, per-slice metrics and plots.

Everything here except :func:`evaluate_predictions` is a plain function on a pandas frame that
holds the true label, ``prediction`` and (classification) the probability columns written by
:func:`pipelines.model.predict_frame`. Undefined metrics (a slice holding one class, no
positive rows, constant targets) come back as ``nan`` instead of raising.

Every metric is computed from the mergeable statistics of :mod:`pipelines.stages.eval_stats`:
a frame is one batch of them, and :func:`evaluate_predictions` streams a Dataset through the
same per-batch kernel and merges the results on the driver, so no task ever holds the whole
test split and both paths share one implementation of each metric.

Labels are compared as text after normalising numbers, so ``1``, ``1.0`` and ``True`` read from
Parquet match the ``1`` / ``True`` seen in training.
"""

from __future__ import annotations

import itertools
import logging
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial, reduce
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN
from pipelines.stages.eval_stats import (
    DEFAULT_CAP,
    Calibration,
    ClassificationStats,
    Histogram,
    RegressionStats,
    confusion_matrix,
    label_pairs,
)
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

# Numeric slice columns with more distinct values than this are cut into quartiles.
_MAX_NUMERIC_SLICE_VALUES = 10
# Distinct scores a per-slice score histogram keeps exactly (the whole split keeps
# eval_stats.DEFAULT_CAP): a slice's curves are only summed up in two numbers.
_SLICE_CAP = 2**16
# Rows per batch when streaming a Dataset: bounds each task's memory.
_BATCH_ROWS = 65_536
# The per-batch reduction is light; a fraction of a CPU lets it run beside other stages.
_BATCH_CPUS = 0.5


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


def _scored_rows(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows that have a true label: a row without one cannot be scored."""
    return frame.loc[frame[target].notna()]


def _probability_columns(columns: Sequence[str], task: str, classes: Sequence[Any]) -> list[str]:
    """The probability columns a classification task reads, in ``classes`` order.

    Raises:
        ValueError: one is not among ``columns``.
    """
    if task == "binary":
        if PROBABILITY_COLUMN not in columns:
            raise ValueError(f"binary predictions lack the {PROBABILITY_COLUMN!r} column")
        return [PROBABILITY_COLUMN]
    cols = [f"{PROBABILITY_COLUMN}_{c}" for c in classes]
    missing = [c for c in cols if c not in columns]
    if missing:
        raise ValueError(
            f"multiclass predictions lack probability columns {missing}; expected one "
            f"'{PROBABILITY_COLUMN}_<class>' column per class as pipelines.model.predict_frame writes"
        )
    return cols


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class _Spec:
    """What the per-batch kernel accumulates (small, shipped to every task).

    ``edges``: slice column -> quartile edges for a numeric column cut into ranges, ``None``
    for a column sliced per value.
    """

    target: str
    task: str
    labels: list[str]
    proba: list[str]
    slices: tuple[str, ...] = ()
    edges: dict[str, np.ndarray | None] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return self.task == "binary"


def _spec(columns: Sequence[str], *, target: str, task: str, classes: Sequence[Any] | None,
          slices: Sequence[str] = (), plots: bool = False) -> _Spec:
    if task == "regression":
        return _Spec(target, task, [], [], tuple(slices))
    if task not in ("binary", "multiclass"):
        raise ValueError(f"task must be binary, multiclass or regression, got {task!r}")
    if not classes or (task == "binary" and len(classes) != 2):
        raise ValueError(f"{task} metrics need the training classes, got {classes!r}")
    if plots and task == "multiclass" and PROBABILITY_COLUMN not in columns:
        raise ValueError(f"the multiclass calibration plot needs the {PROBABILITY_COLUMN!r} "
                         "column (the predicted class's probability)")
    return _Spec(target, task, [_label_text(c) for c in classes],
                 _probability_columns(columns, task, classes), tuple(slices))


Group = ClassificationStats | RegressionStats


@dataclass
class _Stats:
    """One batch's (or a merged set of batches') statistics: the whole batch, each slice
    value's subset, and the raw values of the columns sliced per value (for their order)."""

    overall: Group
    slices: dict[str, dict[str, Group]]
    values: dict[str, set[Any]]


def _group(frame: pd.DataFrame, spec: _Spec, *, plots: bool, cap: int) -> Group:
    """Statistics of scored rows; ``plots``: also what the plots need."""
    if spec.task == "regression":
        return RegressionStats.of(frame[spec.target].to_numpy(dtype=float),
                                  frame[PREDICTION_COLUMN].to_numpy(dtype=float), sample=plots)
    yt, yp = _labels(frame[spec.target]), _labels(frame[PREDICTION_COLUMN])
    proba = frame[spec.proba].to_numpy(dtype=float)
    proba = proba[:, 0] if spec.binary else proba
    calibration = None
    if plots and spec.binary:
        calibration = Calibration.of(yt == spec.labels[1], proba)
    elif plots:
        # Multiclass calibration: is the predicted class right as often as its probability says?
        calibration = Calibration.of(yt == yp, frame[PROBABILITY_COLUMN].to_numpy(dtype=float))
    return ClassificationStats.of(yt, yp, proba, spec.labels, binary=spec.binary,
                                  calibration=calibration, cap=cap)


def _merge_groups(a: Group, b: Group, cap: int) -> Group:
    if isinstance(a, RegressionStats):
        assert isinstance(b, RegressionStats)
        return a.merge(b)
    assert isinstance(b, ClassificationStats)
    return a.merge(b, cap=cap)


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _slice_key_series(values: pd.Series, edges: np.ndarray | None) -> pd.Series:
    """The slice value of each row: its label, its quartile range or ``__missing__``."""
    if edges is None:
        return pd.Series(_labels(values), index=values.index, dtype=object)
    # Clipped: past the histogram cap the edges are truncated values, just inside the range.
    nums = values.astype(float).clip(edges[0], edges[-1])
    binned = pd.cut(nums, edges, labels=_range_names(edges), include_lowest=True)
    return binned.astype(object).where(binned.notna(), MISSING_SLICE)


def _batch_stats(frame: pd.DataFrame, spec: _Spec, *, plots: bool) -> _Stats:
    """The per-batch kernel: statistics of the scored rows of one batch (or a whole frame)."""
    frame = _scored_rows(frame, spec.target)
    overall = _group(frame, spec, plots=plots, cap=DEFAULT_CAP)
    slices: dict[str, dict[str, Group]] = {}
    values: dict[str, set[Any]] = {}
    for column in spec.slices:
        edges = spec.edges.get(column)
        if edges is None:
            values[column] = set(frame[column].dropna().unique().tolist())
        keys = _slice_key_series(frame[column], edges).to_numpy()
        codes, uniques = pd.factorize(keys)
        slices[column] = {str(key): _group(frame.iloc[codes == i], spec, plots=False,
                                           cap=_SLICE_CAP)
                          for i, key in enumerate(uniques)}
    return _Stats(overall, slices, values)


def _merge_stats(a: _Stats, b: _Stats) -> _Stats:
    """Both batches' statistics; the result does not depend on which comes first."""
    slices = {}
    for column in a.slices.keys() | b.slices.keys():
        left, right = a.slices.get(column, {}), b.slices.get(column, {})
        slices[column] = {key: (_merge_groups(left[key], right[key], _SLICE_CAP)
                                                if key in left and key in right
                                else left[key] if key in left else right[key])
                          for key in left.keys() | right.keys()}
    values = {c: a.values.get(c, set()) | b.values.get(c, set())
              for c in a.values.keys() | b.values.keys()}
    return _Stats(_merge_groups(a.overall, b.overall, DEFAULT_CAP), slices, values)


def _metrics(group: Group, spec: _Spec) -> dict[str, float]:
    if isinstance(group, RegressionStats):
        return group.metrics()
    return group.metrics(spec.labels, binary=spec.binary)


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
    and ``mape`` as a fraction, over the rows whose target is not zero (``nan`` if none); a
    non-finite target or prediction makes them all ``nan``.

    ROC AUC ties count half and average precision steps over distinct scores, as in
    scikit-learn; sums are exact (see :mod:`pipelines.stages.eval_stats`).
    """
    spec = _spec(list(frame.columns), target=target, task=task, classes=classes)
    return _metrics(_batch_stats(frame, spec, plots=False).overall, spec)


def confusion(frame: pd.DataFrame, *, target: str, classes: Sequence[Any]) -> list[list[int]]:
    """Confusion matrix: ``matrix[i][j]`` counts rows of true ``classes[i]`` predicted ``classes[j]``.

    Rows with a missing label, or a true or predicted label outside ``classes``, are not counted.
    """
    frame = _scored_rows(frame, target)
    pairs = label_pairs(_labels(frame[target]), _labels(frame[PREDICTION_COLUMN]))
    return confusion_matrix(pairs, [_label_text(c) for c in classes])


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


Counts = dict[str, Histogram | None]
"""Slice column -> value histogram of a numeric column, ``None`` for another one (a column
missing from the mapping had no value in the batch and does not vote)."""


def _slice_counts(frame: pd.DataFrame, *, target: str, slices: Sequence[str]) -> Counts:
    """The light first pass over a batch: value counts of the numeric slice columns."""
    frame = _scored_rows(frame, target)
    out: Counts = {}
    for column in slices:
        values = frame[column]
        if values.notna().any():
            out[column] = (Histogram.of(values.to_numpy(dtype=float, na_value=np.nan),
                                        np.ones(len(values)))
                           if _numeric(values) else None)
    return out


def _merge_counts(a: Counts, b: Counts) -> Counts:
    out = dict(a)
    for column, h in b.items():
        if column not in out:
            out[column] = h
        else:
            g = out[column]
            out[column] = None if g is None or h is None else g.merge(h)
    return out


def _quartile_edges(h: Histogram) -> np.ndarray:
    """``np.nanquantile(values, [0, .25, .5, .75, 1])`` (linear method) from value counts,
    deduplicated; exact unless the histogram was truncated past its cap."""
    n = int(h.total[0])
    cumulative = np.cumsum(h.counts[:, 0])

    def at(rank: int) -> float:
        return float(h.values[np.searchsorted(cumulative, rank, side="right")])

    edges = []
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        virtual = n * q + (1 - q) - 1  # numpy's virtual index for the linear method
        below = int(np.floor(virtual))
        gamma = virtual - below
        a, b = at(below), at(min(below + 1, n - 1))
        diff = b - a
        edges.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return np.unique(np.array(edges))


def _edges(counts: Counts, slices: Sequence[str]) -> dict[str, np.ndarray | None]:
    """Numeric columns with more than ten distinct values are cut into quartiles."""
    out: dict[str, np.ndarray | None] = {}
    for column in slices:
        h = counts.get(column)
        many = h is not None and (len(h.values) > _MAX_NUMERIC_SLICE_VALUES or h.bits < 52)
        out[column] = _quartile_edges(h) if many and h is not None else None
    return out


def _slice_order(stats: _Stats, spec: _Spec, column: str) -> list[str]:
    """Ranges in order, or values in their natural order (text if unorderable); then missing."""
    edges = spec.edges.get(column)
    if edges is not None:
        order = _range_names(edges)
    else:
        distinct = list(stats.values.get(column, set()))
        try:
            distinct.sort()
        except TypeError:
            distinct.sort(key=str)
        order = list(dict.fromkeys(_label_text(v) for v in distinct))
    present = stats.slices.get(column, {})
    order = [v for v in order if v in present]
    if MISSING_SLICE in present:
        order.append(MISSING_SLICE)
    return order


def _slice_results(stats: _Stats, spec: _Spec,
                   min_rows: int) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in spec.slices:
        per_value: dict[str, dict[str, float]] = {}
        for value in _slice_order(stats, spec, column):
            group = stats.slices[column][value]
            result: dict[str, float] = {"rows": float(group.rows)}
            if group.rows >= min_rows:
                result |= _metrics(group, spec)
            per_value[value] = result
        out[column] = per_value
    return out


def _check_slices(columns: Sequence[str], slices: Sequence[str]) -> None:
    missing = [c for c in slices if c not in columns]
    if missing:
        raise ValueError(f"slice columns {missing} are not in the predictions; "
                         f"available: {sorted(map(str, columns))}")


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
    _check_slices(list(frame.columns), slices)
    spec = _spec(list(frame.columns), target=target, task=task, classes=classes, slices=slices)
    return _evaluate_stream(_one_batch(frame), spec, None, min_rows=min_rows).slices


# --------------------------------------------------------------------------- evaluation


Kernel = Callable[[pd.DataFrame], Any]
Stream = Callable[[Kernel, list[str]], Iterable[Any]]
"""``stream(kernel, columns)``: ``kernel`` of every batch of those columns, in any order."""


def _one_batch(frame: pd.DataFrame) -> Stream:
    """A frame as a stream of one batch."""
    def stream(kernel: Kernel, columns: list[str]) -> Iterable[Any]:
        return [kernel(frame[columns])]
    return stream


def _evaluate_stream(stream: Stream, spec: _Spec, plot_dir: Where | None, *,
                     min_rows: int = 20, counted: Sequence[str] | None = None) -> Evaluation:
    """Evaluate batches: a light pass for the quartile edges of the slice columns that may be
    numeric (``counted``, default all), then the statistics pass, each merged as its batches
    arrive."""
    counted = list(spec.slices if counted is None else counted)
    if counted:
        none: Counts = {}
        counts = reduce(_merge_counts, stream(
            partial(_slice_counts, target=spec.target, slices=counted),
            list(dict.fromkeys([spec.target, *counted]))), none)
        spec = replace(spec, edges=_edges(counts, spec.slices))
    columns = list(dict.fromkeys([spec.target, PREDICTION_COLUMN, *spec.slices, *spec.proba]))
    plots = plot_dir is not None
    if plots and spec.task == "multiclass":
        columns.append(PROBABILITY_COLUMN)
    kernel = partial(_batch_stats, spec=spec, plots=plots)
    empty = kernel(pd.DataFrame({c: pd.Series(dtype=float) for c in columns}))
    stats = reduce(_merge_stats, stream(kernel, columns), empty)
    logger.debug("evaluated %d test rows", stats.overall.rows)
    return _evaluation(stats, spec, plot_dir, min_rows=min_rows)


def _evaluation(stats: _Stats, spec: _Spec, plot_dir: Where | None, *,
                min_rows: int) -> Evaluation:
    """The :class:`Evaluation` of merged statistics, with its plots written to ``plot_dir``."""
    overall = stats.overall
    matrix = (None if isinstance(overall, RegressionStats)
              else confusion_matrix(overall.pairs, spec.labels))
    plots: list[StoragePath] = []
    if plot_dir is not None and overall.rows:
        plots = _write_plots(overall, spec, matrix, storage_path(plot_dir))
    return Evaluation(metrics=_metrics(overall, spec), confusion=matrix,
                      slices=_slice_results(stats, spec, min_rows), plots=plots)


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
    _check_slices(list(frame.columns), slices)
    spec = _spec(list(frame.columns), target=target, task=task, classes=classes, slices=slices,
                 plots=plot_dir is not None)
    return _evaluate_stream(_one_batch(frame), spec, plot_dir)


def _write_plots(overall: Group, spec: _Spec, matrix: list[list[int]] | None,
                 plot_dir: StoragePath) -> list[StoragePath]:
    """Plots drawn from merged statistics: curves from the score histograms, calibration
    from the bin sums, residuals from the bounded sample."""
    from pipelines.stages import plots

    if isinstance(overall, RegressionStats):
        assert overall.sample is not None
        return [plots.residual_plot(overall.sample.y, overall.sample.pred,
                                    plot_dir / "residuals.png")]
    assert matrix is not None and overall.calibration is not None
    labels = spec.labels
    curves = ([(labels[1], overall.curves[0])] if spec.binary
              else list(zip(labels, overall.curves, strict=True)))
    return [
        plots.roc_pr_plot(curves, plot_dir / "roc_pr.png"),
        plots.confusion_plot(matrix, labels, plot_dir / "confusion.png"),
        plots.calibration_bins_plot(overall.calibration, plot_dir / "calibration.png"),
    ]


def _pickled_batch(batch: pd.DataFrame, kernel: Any) -> pd.DataFrame:
    """A batch's kernel result as one pickled row: tiny next to the batch it stands for."""
    return pd.DataFrame({"stats": [pickle.dumps(kernel(batch), protocol=5)]})


def _dataset_stream(ds: Dataset) -> Stream:
    """Batches of ``ds``, each reduced by ``kernel`` in its own task; the small results are
    yielded to the driver as they finish."""
    def stream(kernel: Kernel, columns: list[str]) -> Iterator[Any]:
        parts = ds.select_columns(columns).map_batches(
            partial(_pickled_batch, kernel=kernel), batch_format="pandas",
            batch_size=_BATCH_ROWS, num_cpus=_BATCH_CPUS)
        for block in parts.iter_batches(batch_format="pandas", batch_size=None):
            for blob in block["stats"]:
                yield pickle.loads(blob)
    return stream


def evaluate_predictions(
    predictions: Dataset,
    *,
    target: str,
    task: str,
    classes: Sequence[Any] | None,
    slices: Sequence[str] = (),
    plot_dir: Where | None = None,
) -> Evaluation:
    """Evaluate a predictions Dataset by streaming it and return the :class:`Evaluation`.

    Only the label, prediction, probability and slice columns leave storage. Each batch of
    at most 65,536 rows is reduced to mergeable statistics in its own task; the driver merges
    them as they arrive (so neither a task nor the driver holds the test split, and memory
    stays bounded by the histogram caps) and computes the same metrics as
    :func:`evaluate_frame` would on the whole frame. With numeric slice columns a first, light
    pass counts their values to find the quartile edges. Plots are drawn on the driver and
    written to ``plot_dir`` through :class:`StoragePath`, a local folder or an object-store
    prefix.

    Raises:
        ValueError: the label, ``prediction``, a probability or a slice column is missing.
    """
    available = predictions.columns()
    missing = [c for c in (target, PREDICTION_COLUMN, *slices) if c not in available]
    if missing:
        raise ValueError(f"predictions lack columns {missing}; available: {available}")
    spec = _spec(available, target=target, task=task, classes=classes, slices=slices,
                 plots=plot_dir is not None)
    return _evaluate_stream(_dataset_stream(predictions), spec, plot_dir,
                            counted=_maybe_numeric(predictions, slices))


def _maybe_numeric(ds: Dataset, slices: Sequence[str]) -> list[str]:
    """The slice columns whose schema type may read as numbers: a string or boolean column is
    sliced per value, so the first pass need not read it."""
    import pyarrow as pa

    schema = ds.schema()
    types = dict(zip(schema.names, schema.types, strict=True)) if schema is not None else {}

    def text(t: Any) -> bool:
        return isinstance(t, pa.DataType) and (
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t))
    return [c for c in slices if not text(types.get(c))]
