"""Mergeable sufficient statistics of an evaluation: what one batch of predictions contributes.

Evaluation streams over the test split: every batch is reduced to the small objects defined
here, the driver merges them as they arrive, and the metrics and plots are computed from the
merged statistics. The same code evaluates one pandas frame (one "batch"), so each metric
has one implementation.

Why the results do not depend on how rows are split into batches nor on the order in which
batches are merged (Ray Data delivers them in any order), so that the same data gives
byte-identical metrics on every run:

- counts are integers;
- float sums are kept **exactly**, as an integer number of ``2**-2304`` (every float64 and
  every square of one is a whole number of those units; see :func:`exact_sum`), so a mean is
  the correctly rounded quotient of exact integers;
- score and value histograms (:class:`Histogram`) keep every distinct value and its counts,
  which is exact, up to a cap on the number of distinct values. Past the cap, values are
  truncated to fewer mantissa bits, the most bits for which the whole data set fits under the
  cap. Truncation to ``k`` bits after truncation to ``k' > k`` bits equals truncation to ``k``
  bits directly, and a subset never needs fewer bits than the whole, so the result is the
  same in whatever order parts are merged: deterministic always, exact where the data is
  small, approximate (merged ties at nearby scores) past the cap;
- the regression residual sample keeps the rows with the smallest hash of their values, a
  choice that does not depend on order either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

__all__ = [
    "CLASSIFICATION_KEYS",
    "DEFAULT_CAP",
    "MIN_CAP",
    "REGRESSION_KEYS",
    "Calibration",
    "ClassificationStats",
    "Histogram",
    "RegressionStats",
    "ResidualSample",
    "average_precision",
    "confusion_matrix",
    "exact_sum",
    "exact_value",
    "label_pairs",
    "mean_or_nan",
    "metric_suffix",
    "pr_points",
    "roc_auc",
    "roc_points",
]

DEFAULT_CAP = 2**20
"""Distinct values a histogram keeps exactly (about 24 MB for a two-count score histogram)."""

MIN_CAP = 2**13
"""The smallest cap: more than the distinct signs and exponents of float64, so truncating the
mantissa can always bring a histogram under it."""

CLASSIFICATION_KEYS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss",
)
REGRESSION_KEYS = ("rmse", "mae", "r2", "mape")
# Probabilities are clipped before the log so that a confident mistake costs a finite amount.
_EPS = 1e-15

# Every float64 is a multiple of 2**-1074 and every square of one a multiple of 2**-2148;
# counting in units of 2**-2304 keeps the shifts below non-negative for both.
_UNIT_BITS = 2304
_MANTISSA_BITS = 52


# --------------------------------------------------------------------------- exact sums


def _sum_shifted(ints: np.ndarray, shifts: np.ndarray) -> int:
    """``sum(ints[i] << shifts[i])`` exactly; ``|ints| < 2**62``, ``shifts >= 0``."""
    order = np.argsort(shifts, kind="stable")
    ints, shifts = ints[order], shifts[order]
    distinct, start = np.unique(shifts, return_index=True)
    # Split in 31-bit halves so that the int64 group sums cannot overflow.
    high = np.add.reduceat(ints >> 31, start)
    low = np.add.reduceat(ints & (2**31 - 1), start)
    total = 0
    for shift, h, lo in zip(distinct.tolist(), high.tolist(), low.tolist(), strict=True):
        total += ((h << 31) + lo) << shift
    return total


def exact_sum(values: np.ndarray, *, square: bool = False) -> int:
    """The exact sum of finite ``values`` (or of their exact squares), in units of ``2**-2304``.

    Integers add without rounding, so partial sums merge by ``+`` in any order and give the
    same result; :func:`exact_value` turns a sum into a correctly rounded float.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[v != 0]
    if not len(v):
        return 0
    m, e = np.frexp(v)
    mant = (m * 2.0**53).astype(np.int64)  # exact: |m| < 1 has 53 significant bits
    exp = e.astype(np.int64) - 53
    if not square:
        return _sum_shifted(mant, exp + _UNIT_BITS)
    high, low = mant >> 27, mant & (2**27 - 1)  # mant = high * 2**27 + low
    return (_sum_shifted(high * high, 2 * exp + 54 + _UNIT_BITS)
            + _sum_shifted(2 * high * low, 2 * exp + 27 + _UNIT_BITS)
            + _sum_shifted(low * low, 2 * exp + _UNIT_BITS))


def exact_value(units: int) -> Fraction:
    """An :func:`exact_sum` as an exact rational number."""
    return Fraction(units, 1 << _UNIT_BITS)


def _ratio(numerator: Fraction | int, denominator: Fraction | int) -> float:
    """``numerator / denominator`` correctly rounded; nan when the denominator is 0."""
    if denominator == 0:
        return math.nan
    try:
        return float(Fraction(numerator) / Fraction(denominator))
    except OverflowError:
        return math.copysign(math.inf, numerator) * math.copysign(1, denominator)


# --------------------------------------------------------------------------- histograms


def _truncate(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` with all but the ``bits`` leading mantissa bits cleared (toward zero)."""
    if bits >= _MANTISSA_BITS:
        return values
    raw = values.view(np.uint64) & np.uint64(~((1 << (_MANTISSA_BITS - bits)) - 1) & (2**64 - 1))
    return raw.view(np.float64)


def _bits_to_fit(sorted_values: np.ndarray, bits: int, cap: int) -> int:
    """The most mantissa bits (at most ``bits``) leaving at most ``cap`` distinct values.

    Truncation is monotone, so the truncated values stay sorted and are as many as the
    adjacent pairs that still differ, plus one. A pair differs after truncation to ``k`` bits
    while ``k`` reaches below the highest bit in which the two differ.
    """
    if len(sorted_values) <= cap:
        return bits
    raw = sorted_values.view(np.uint64)
    diff = raw[1:] ^ raw[:-1]
    top = np.frexp(diff.astype(np.float64))[1].astype(np.int64) - 1
    top -= (diff >> top.astype(np.uint64)) == 0  # the float conversion may round up a bit
    need = np.clip(_MANTISSA_BITS - top, 0, None)  # sign or exponent differ: need 0 bits
    return min(bits, int(np.partition(need, cap - 1)[cap - 1]) - 1)


@dataclass
class Histogram:
    """Distinct finite values (ascending) with one or more integer counts each.

    Score histograms count (positive, negative) rows per score; value histograms count rows
    per value. ``bits`` is the number of mantissa bits kept (52: exact); ``nonfinite``
    counts rows whose value was not finite (left out).
    """

    values: np.ndarray
    counts: np.ndarray
    bits: int = _MANTISSA_BITS
    nonfinite: int = 0

    @classmethod
    def of(cls, values: np.ndarray, counts: np.ndarray, *, cap: int = DEFAULT_CAP) -> Histogram:
        """The histogram of ``values`` with per-row ``counts`` (shape ``(n, m)``)."""
        v = np.asarray(values, dtype=np.float64)
        c = np.asarray(counts, dtype=np.int64)
        c = c[:, None] if c.ndim == 1 else c
        finite = np.isfinite(v)
        return cls(v[:0], c[:0], nonfinite=int((~finite).sum()))._add(v[finite], c[finite], cap)

    @classmethod
    def empty(cls, width: int) -> Histogram:
        return cls(np.empty(0, dtype=np.float64), np.zeros((0, width), dtype=np.int64))

    def merge(self, other: Histogram, *, cap: int = DEFAULT_CAP) -> Histogram:
        """Both histograms together, truncated to the fewer bits of the two (and the cap)."""
        out = Histogram(self.values, self.counts, min(self.bits, other.bits),
                        self.nonfinite + other.nonfinite)
        return out._add(other.values, other.counts, cap)

    def _add(self, values: np.ndarray, counts: np.ndarray, cap: int) -> Histogram:
        if cap < MIN_CAP:
            raise ValueError(f"a histogram cap must be at least {MIN_CAP}, got {cap}")
        v = np.concatenate([self.values, values]) + 0.0  # -0.0 becomes 0.0
        c = np.concatenate([self.counts, counts])
        bits = self.bits
        while True:
            # Stable sort: merging two sorted runs is linear (timsort).
            v = _truncate(v, bits)
            order = np.argsort(v, kind="stable")
            ordered = v[order]
            start = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(v) else order
            distinct = ordered[start]
            summed = np.add.reduceat(c[order], start) if len(v) else c[:0]
            fit = _bits_to_fit(distinct, bits, cap)
            if fit == bits:
                return Histogram(distinct, summed, bits, self.nonfinite)
            bits, v, c = fit, distinct, summed

    @property
    def total(self) -> np.ndarray:
        return self.counts.sum(axis=0)


# --------------------------------------------------------------------------- score curves


def _descending(h: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Positives, negatives and cumulative true / false positives at each distinct score,
    highest first (one threshold per distinct score, ties together as scikit-learn has it)."""
    pos, neg = h.counts[::-1, 0], h.counts[::-1, 1]
    return pos, neg, np.cumsum(pos), np.cumsum(neg)


def roc_auc(h: Histogram) -> float:
    """Area under the ROC curve (trapezoids between distinct thresholds, so ties count half),
    as an exact ratio of integers; nan unless both outcomes occur and every score is finite."""
    pos, neg, tps, fps = _descending(h)
    p, n = int(tps[-1]) if len(tps) else 0, int(fps[-1]) if len(fps) else 0
    if h.nonfinite or p == 0 or n == 0:
        return math.nan
    doubled = sum((neg * (2 * (tps - pos) + pos)).tolist())
    return _ratio(doubled, 2 * p * n)


def average_precision(h: Histogram) -> float:
    """Average precision: the sum over distinct thresholds (highest first) of the recall gained
    times the precision there; nan without a positive row or with a non-finite score."""
    pos, _, tps, fps = _descending(h)
    p = int(tps[-1]) if len(tps) else 0
    if h.nonfinite or p == 0:
        return math.nan
    hits = pos > 0
    return math.fsum((pos[hits] * (tps[hits] / (tps[hits] + fps[hits]))).tolist()) / p


def roc_points(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) from (0, 0) through every distinct threshold."""
    _, _, tps, fps = _descending(h)
    return (np.concatenate([[0.0], fps / max(int(fps[-1]), 1)]),
            np.concatenate([[0.0], tps / max(int(tps[-1]), 1)]))


def pr_points(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct threshold, lowest first, then (0, 1)."""
    _, _, tps, fps = _descending(h)
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / max(int(tps[-1]), 1)
    return np.concatenate([recall[::-1], [0.0]]), np.concatenate([precision[::-1], [1.0]])


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """Per equal-width probability bin: rows, rows where the event happened, and the exact
    sum of the predicted probabilities (so the reliability curve is exact and mergeable)."""

    rows: np.ndarray
    hits: np.ndarray
    confidence: list[int]

    @classmethod
    def of(cls, hit: np.ndarray, proba: np.ndarray, bins: int = 10) -> Calibration:
        """Rows with a non-finite probability or outcome are left out; probabilities are
        clipped to [0, 1]."""
        h = np.asarray(hit, dtype=np.float64)
        p = np.asarray(proba, dtype=np.float64)
        finite = np.isfinite(p) & np.isfinite(h)
        h, p = h[finite], np.clip(p[finite], 0.0, 1.0)
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        return cls(np.bincount(which, minlength=bins).astype(np.int64),
                   np.bincount(which, weights=h, minlength=bins).astype(np.int64),
                   [exact_sum(p[which == b]) for b in range(bins)])

    def merge(self, other: Calibration) -> Calibration:
        return Calibration(self.rows + other.rows, self.hits + other.hits,
                           [a + b for a, b in zip(self.confidence, other.confidence, strict=True)])

    def curve(self) -> tuple[list[float], list[float]]:
        """(mean predicted probability, observed frequency) of each bin holding rows."""
        used = [b for b in range(len(self.rows)) if self.rows[b]]
        return ([_ratio(exact_value(self.confidence[b]), int(self.rows[b])) for b in used],
                [_ratio(int(self.hits[b]), int(self.rows[b])) for b in used])


# --------------------------------------------------------------------------- regression


_SAMPLE_SIZE = 20_000


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed, well-spread hash of 64-bit patterns."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class ResidualSample:
    """The (true, predicted) pairs of the rows with the smallest hash of their values: a
    bounded sample for the residual plot, the same whatever the order of the batches."""

    key: np.ndarray
    y: np.ndarray
    pred: np.ndarray

    @classmethod
    def of(cls, y: np.ndarray, pred: np.ndarray, size: int = _SAMPLE_SIZE) -> ResidualSample:
        y, pred = np.asarray(y, dtype=np.float64) + 0.0, np.asarray(pred, dtype=np.float64) + 0.0
        key = _mix(y.view(np.uint64) ^ _mix(pred.view(np.uint64)))
        return cls(key, y, pred)._keep(size)

    def merge(self, other: ResidualSample, size: int = _SAMPLE_SIZE) -> ResidualSample:
        return ResidualSample(np.concatenate([self.key, other.key]),
                              np.concatenate([self.y, other.y]),
                              np.concatenate([self.pred, other.pred]))._keep(size)

    def _keep(self, size: int) -> ResidualSample:
        order = np.lexsort((self.pred.view(np.uint64), self.y.view(np.uint64), self.key))[:size]
        return ResidualSample(self.key[order], self.y[order], self.pred[order])


@dataclass
class RegressionStats:
    """Exact sums behind ``rmse``, ``mae``, ``r2`` and ``mape`` (see :func:`exact_sum`)."""

    rows: int = 0
    sum_y: int = 0
    sum_y2: int = 0
    sum_sq_err: int = 0
    sum_abs_err: int = 0
    sum_ape: int = 0
    nonzero: int = 0
    nonfinite: int = 0
    sample: ResidualSample | None = field(default=None)

    @classmethod
    def of(cls, y: np.ndarray, pred: np.ndarray, *, sample: bool = False) -> RegressionStats:
        """Statistics of one batch; ``sample``: keep a :class:`ResidualSample` for the plot.

        A row with a non-finite target or prediction makes every metric nan.
        """
        y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
        finite = np.isfinite(y) & np.isfinite(pred)
        kept, guess = y[finite], pred[finite]
        err = guess - kept
        nonzero = kept != 0
        return cls(len(y), exact_sum(kept), exact_sum(kept, square=True),
                   exact_sum(err, square=True), exact_sum(np.abs(err)),
                   exact_sum(np.abs(err[nonzero] / kept[nonzero])), int(nonzero.sum()),
                   int((~finite).sum()), ResidualSample.of(y, pred) if sample else None)

    def merge(self, other: RegressionStats) -> RegressionStats:
        sample = (other.sample if self.sample is None else
                  self.sample if other.sample is None else self.sample.merge(other.sample))
        return RegressionStats(self.rows + other.rows, self.sum_y + other.sum_y,
                               self.sum_y2 + other.sum_y2, self.sum_sq_err + other.sum_sq_err,
                               self.sum_abs_err + other.sum_abs_err, self.sum_ape + other.sum_ape,
                               self.nonzero + other.nonzero, self.nonfinite + other.nonfinite,
                               sample)

    def metrics(self) -> dict[str, float]:
        """``rmse``, ``mae``, ``r2`` (nan for fewer than two rows or constant targets) and
        ``mape`` over the rows whose target is not zero (nan if none)."""
        n = self.rows
        if n == 0 or self.nonfinite:
            return dict.fromkeys(REGRESSION_KEYS, math.nan)
        sse = exact_value(self.sum_sq_err)
        ss_tot = exact_value(self.sum_y2) - exact_value(self.sum_y) ** 2 / n
        return {
            "rmse": math.sqrt(_ratio(sse, n)),
            "mae": _ratio(exact_value(self.sum_abs_err), n),
            "r2": 1.0 - _ratio(sse, ss_tot) if n > 1 and ss_tot > 0 else math.nan,
            "mape": _ratio(exact_value(self.sum_ape), self.nonzero),
        }


def mean_or_nan(values: Sequence[float]) -> float:
    """Mean of the values that are not nan; nan when none is."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else math.nan


# --------------------------------------------------------------------------- classification


def metric_suffix(label: str) -> str:
    """A class label as MLflow accepts it in a metric name (letters, digits, ``_-. /``)."""
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in label)


def label_pairs(yt: np.ndarray, yp: np.ndarray) -> dict[tuple[str, str], int]:
    """Rows per (true label, predicted label); labels are texts, never missing."""
    true_codes, true_labels = pd.factorize(np.asarray(yt, dtype=object))
    pred_codes, pred_labels = pd.factorize(np.asarray(yp, dtype=object))
    width = max(len(pred_labels), 1)
    keys, counts = np.unique(true_codes.astype(np.int64) * width + pred_codes,
                             return_counts=True)
    return {(str(true_labels[k // width]), str(pred_labels[k % width])): int(n)
            for k, n in zip(keys.tolist(), counts.tolist(), strict=True)}


def confusion_matrix(pairs: dict[tuple[str, str], int], labels: list[str]) -> list[list[int]]:
    """``matrix[i][j]``: rows of true ``labels[i]`` predicted ``labels[j]`` (others left out)."""
    return [[pairs.get((t, p), 0) for p in labels] for t in labels]


def _divide(num: int, den: int) -> float:
    return num / den if den else math.nan


@dataclass
class ClassificationStats:
    """Counts and sums behind the classification metrics of :meth:`metrics`.

    ``pairs`` counts rows per (true label, predicted label), as normalised label texts;
    ``loss`` is the exact sum of ``-log P(true class)`` over ``loss_rows`` rows, undefined
    when a true label is not a known class or a probability is not finite; ``curves`` holds
    one score :class:`Histogram` of (positive, negative) rows per one-vs-rest problem (binary:
    the positive class's probability; multiclass: each class's); ``calibration`` is filled
    only where plots are wanted.
    """

    pairs: dict[tuple[str, str], int]
    loss: int
    loss_rows: int
    loss_undefined: bool
    curves: list[Histogram]
    calibration: Calibration | None = None

    @classmethod
    def of(cls, yt: np.ndarray, yp: np.ndarray, proba: np.ndarray, labels: list[str], *,
           binary: bool, calibration: Calibration | None = None,
           cap: int = DEFAULT_CAP) -> ClassificationStats:
        """Statistics of one batch.

        Args:
            yt, yp: true and predicted labels as normalised texts.
            proba: binary: P(``labels[1]``) per row; multiclass: an (n, k) matrix in
                ``labels`` order.
            labels: the training classes as normalised texts.
            binary: whether the task is binary.
            calibration: the batch's calibration counts, where plots are wanted.
            cap: distinct scores each curve keeps exactly.
        """
        yt, yp = np.asarray(yt, dtype=object), np.asarray(yp, dtype=object)
        proba = np.asarray(proba, dtype=np.float64)
        matrix = np.column_stack([1 - proba, proba]) if binary else proba.reshape(len(yt), len(labels))
        codes = pd.Index(labels).get_indexer(yt)
        undefined = bool((codes < 0).any() or not np.isfinite(matrix).all())
        loss = 0 if undefined else exact_sum(
            -np.log(np.clip(matrix[np.arange(len(codes)), codes], _EPS, 1.0)))
        if binary:
            hits = [(yt == labels[1], proba)]
        else:
            hits = [(yt == c, matrix[:, i]) for i, c in enumerate(labels)]
        curves = [Histogram.of(score, np.column_stack([hit, ~hit]), cap=cap)
                  for hit, score in hits]
        return cls(label_pairs(yt, yp), loss, len(yt), undefined, curves, calibration)

    def merge(self, other: ClassificationStats, *, cap: int = DEFAULT_CAP) -> ClassificationStats:
        pairs = dict(self.pairs)
        for key, n in other.pairs.items():
            pairs[key] = pairs.get(key, 0) + n
        calibration = (other.calibration if self.calibration is None else
                       self.calibration if other.calibration is None else
                       self.calibration.merge(other.calibration))
        return ClassificationStats(
            pairs, self.loss + other.loss, self.loss_rows + other.loss_rows,
            self.loss_undefined or other.loss_undefined,
            [a.merge(b, cap=cap) for a, b in zip(self.curves, other.curves, strict=True)],
            calibration)

    @property
    def rows(self) -> int:
        return sum(self.pairs.values())

    def metrics(self, labels: list[str], *, binary: bool) -> dict[str, float]:
        """The metrics :func:`pipelines.stages.evaluate.compute_metrics` documents."""
        nan = math.nan
        if not self.pairs:
            empty = dict.fromkeys(CLASSIFICATION_KEYS, nan)
            for c in labels:
                empty |= {f"{k}_class_{metric_suffix(c)}": nan
                          for k in ("precision", "recall", "f1")}
            if not binary:
                empty |= {"precision_macro": nan, "recall_macro": nan, "f1_macro": nan}
            return empty

        # Labels never seen in training still count (as errors), after the known classes.
        seen = {t for t, _ in self.pairs} | {p for _, p in self.pairs}
        every = labels + sorted(seen - set(labels))
        tp = {c: self.pairs.get((c, c), 0) for c in every}
        true = dict.fromkeys(every, 0)
        pred = dict.fromkeys(every, 0)
        for (t, p), n in self.pairs.items():
            true[t] += n
            pred[p] += n
        precision = {c: _divide(tp[c], pred[c]) for c in every}
        recall = {c: _divide(tp[c], true[c]) for c in every}
        f1 = {c: _divide(2 * tp[c], true[c] + pred[c]) for c in every}
        out: dict[str, float] = {
            "accuracy": sum(tp.values()) / self.rows,
            "balanced_accuracy": mean_or_nan(list(recall.values())),
        }
        for c in labels:
            name = metric_suffix(c)
            out[f"precision_class_{name}"] = precision[c]
            out[f"recall_class_{name}"] = recall[c]
            out[f"f1_class_{name}"] = f1[c]
        loss = nan if self.loss_undefined else _ratio(exact_value(self.loss), self.loss_rows)
        if binary:
            positive = labels[1]
            return out | {
                "precision": precision[positive], "recall": recall[positive], "f1": f1[positive],
                "roc_auc": roc_auc(self.curves[0]),
                "pr_auc": average_precision(self.curves[0]),
                "log_loss": loss,
            }
        # Macro averages over the classes present, an undefined value counting as 0.
        present = [c for c in every if c in seen]
        macro = [math.fsum(0.0 if math.isnan(m[c]) else m[c] for c in present) / len(present)
                 for m in (precision, recall, f1)]
        return out | {
            "precision": macro[0], "recall": macro[1], "f1": macro[2],
            "precision_macro": macro[0], "recall_macro": macro[1], "f1_macro": macro[2],
            "roc_auc": mean_or_nan([roc_auc(h) for h in self.curves]),
            "pr_auc": mean_or_nan([average_precision(h) for h in self.curves]),
            "log_loss": loss,
        }
