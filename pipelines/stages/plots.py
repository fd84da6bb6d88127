"""Evaluation plots, each written as one PNG file whose path is returned.

Figures are built with matplotlib's object-oriented API on an Agg canvas: no display is needed,
no global backend is switched and pyplot's figure registry is never touched, so a figure is
freed as soon as it has been saved. Nothing is imported from matplotlib until a plot is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.stages.eval_stats import Calibration, Histogram, pr_points, roc_auc, roc_points
from pipelines.storage.location import StoragePath, Where, storage_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "attribution_summary_plot",
    "calibration_bins_plot",
    "calibration_plot",
    "confusion_plot",
    "feature_importance_plot",
    "residual_plot",
    "roc_pr_curves",
    "roc_pr_plot",
]

_DPI = 100
# Above this many classes the per-cell counts of a confusion matrix become unreadable.
_MAX_ANNOTATED_CLASSES = 20


def _figure(width: float, height: float, **grid: Any) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas and its axes (``grid``: arguments of ``Figure.subplots``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**grid)


def _save(fig: Figure, path: Where) -> StoragePath:
    """Render to PNG in memory, then write it in one atomic put (local folder or object store)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    fig.clear()
    out = storage_path(path)
    out.write_bytes(buf.getvalue())
    return out


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def roc_pr_curves(
    y_true: Sequence[Any] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[Any],
    path: Where,
) -> StoragePath:
    """ROC curve (left) and precision-recall curve (right).

    Args:
        y_true: true labels, compared with ``classes`` by equality.
        proba: binary: P(``classes[1]``) per row, or an (n, 2) matrix; multiclass: an (n, k)
            matrix in ``classes`` order, drawn as one one-vs-rest curve per class.
        classes: the class labels.
        path: the PNG to write.

    A class whose curve is undefined on these rows (no positive or no negative row) is left
    out and named on the plot.
    """
    labels = np.asarray(y_true, dtype=object)
    scores = np.asarray(proba, dtype=float)
    if len(classes) == 2:
        positive = scores[:, 1] if scores.ndim == 2 else scores
        problems = [(classes[1], labels == classes[1], positive)]
    else:
        problems = [(c, labels == c, scores[:, i]) for i, c in enumerate(classes)]
    return roc_pr_plot([(name, Histogram.of(score, np.column_stack([hit, ~hit])))
                        for name, hit, score in problems], path)


def roc_pr_plot(curves: Sequence[tuple[Any, Histogram]], path: Where) -> StoragePath:
    """ROC (left) and precision-recall (right) curves from score histograms.

    Args:
        curves: (class name, histogram of (positive, negative) rows per distinct score) for
            each one-vs-rest problem; rows with a non-finite score are left out.
        path: the PNG to write.
    """
    fig, (roc_ax, pr_ax) = _figure(11, 5, ncols=2)
    skipped = []
    for name, histogram in curves:
        h = replace(histogram, nonfinite=0)
        positives, negatives = (int(n) for n in h.total)
        if not positives or not negatives:
            skipped.append(str(name))
            continue
        fpr, tpr = roc_points(h)
        recall, precision = pr_points(h)
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(h):.3f})")
        base_rate = positives / (positives + negatives)
        pr_ax.step(recall, precision, where="post", label=f"{name} (base rate {base_rate:.3f})")
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
    roc_ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC",
               xlim=(0, 1), ylim=(0, 1.02))
    pr_ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall",
              xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize="small")
        if skipped:
            _note(ax, "undefined for: " + ", ".join(skipped))
    return _save(fig, path)


def confusion_plot(matrix: Sequence[Sequence[int]], classes: Sequence[Any], path: Where) -> StoragePath:
    """Confusion matrix, true classes as rows and predicted as columns, coloured by row share."""
    counts = np.asarray(matrix, dtype=float).reshape(len(classes), len(classes))
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = min(4 + 0.5 * len(classes), 14)
    fig, ax = _figure(size + 1, size)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of true class")
    ticks = np.arange(len(classes))
    names = [str(c) for c in classes]
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set(xlabel="Predicted", ylabel="True", title="Confusion matrix")
    if len(classes) <= _MAX_ANNOTATED_CLASSES:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black")
    return _save(fig, path)


def calibration_plot(
    y_true: Sequence[Any] | np.ndarray, proba: np.ndarray, path: Where, *, bins: int = 10
) -> StoragePath:
    """Reliability curve (observed frequency per probability bin) above a histogram of ``proba``.

    Args:
        y_true: 1 where the event happened, else 0. Binary: the row is of the positive class;
            multiclass: the predicted class is right (with ``proba`` that class's probability).
        proba: the predicted probability of the event.
        path: the PNG to write.
        bins: number of equal-width probability bins.
    """
    return calibration_bins_plot(Calibration.of(np.asarray(y_true, dtype=float), proba, bins), path)


def calibration_bins_plot(calibration: Calibration, path: Where) -> StoragePath:
    """:func:`calibration_plot` drawn from per-bin counts and sums (equal-width bins on [0, 1])."""
    bins = len(calibration.rows)
    fig, (curve_ax, hist_ax) = _figure(6, 7, nrows=2, sharex=True, height_ratios=[3, 1])
    curve_ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect")
    if calibration.rows.sum():
        mean_pred, observed = calibration.curve()
        curve_ax.plot(mean_pred, observed, marker="o", label="model")
        hist_ax.bar(np.linspace(0.0, 1.0, bins + 1)[:-1], calibration.rows, width=1.0 / bins,
                    align="edge", color="tab:blue", alpha=0.7)
    else:
        _note(curve_ax, "no rows")
    curve_ax.set(ylabel="Observed frequency", title="Calibration", xlim=(0, 1), ylim=(0, 1.02))
    curve_ax.legend(loc="upper left", fontsize="small")
    hist_ax.set(xlabel="Predicted probability", ylabel="Rows")
    return _save(fig, path)


def residual_plot(y_true: np.ndarray, y_pred: np.ndarray, path: Where) -> StoragePath:
    """Residuals (true - predicted) against predictions (left) and their histogram (right)."""
    truth = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    finite = np.isfinite(truth) & np.isfinite(pred)
    residual = truth[finite] - pred[finite]
    fig, (scatter_ax, hist_ax) = _figure(11, 5, ncols=2)
    scatter_ax.scatter(pred[finite], residual, s=6, alpha=0.4)
    scatter_ax.axhline(0.0, color="gray", linestyle="--", linewidth=1)
    scatter_ax.set(xlabel="Predicted", ylabel="Residual (true - predicted)", title="Residuals")
    if len(residual):
        hist_ax.hist(residual, bins=min(50, max(5, len(residual) // 10)), color="tab:blue", alpha=0.7)
    else:
        _note(hist_ax, "no rows")
    hist_ax.set(xlabel="Residual", ylabel="Rows", title="Residual distribution")
    return _save(fig, path)


def feature_importance_plot(importances: Mapping[str, float], path: Where, top: int = 20) -> StoragePath:
    """Horizontal bars of the ``top`` most important features, largest at the top."""
    ranked = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig, ax = _figure(8, max(3.0, 0.35 * len(ranked) + 1.5))
    if ranked:
        names, values = zip(*reversed(ranked), strict=True)
        ax.barh(range(len(ranked)), values, color="tab:blue")
        ax.set_yticks(range(len(ranked)), [str(n) for n in names])
    else:
        _note(ax, "no feature importances")
    ax.set(xlabel="Importance", title=f"Feature importance (top {len(ranked)})")
    return _save(fig, path)


def attribution_summary_plot(attributions: Mapping[str, np.ndarray],
                             values: Mapping[str, np.ndarray], path: Where,
                             scale: str, top: int = 20) -> StoragePath:
    """A SHAP-style summary: one row of dots per input column, the ``top`` columns by mean
    absolute attribution, each dot a row's attribution coloured by the column's value there.

    ``values``: the raw column as numbers (NaN where missing or not numeric, drawn grey),
    coloured by their rank within the column so one outlier does not wash out the rest.
    """
    ranked = sorted(attributions, key=lambda c: float(np.mean(np.abs(attributions[c]))),
                    reverse=True)[:top]
    fig, ax = _figure(8, max(3.0, 0.4 * len(ranked) + 1.5))
    rng = np.random.default_rng(0)  # the jitter only spreads dots; seeded: same plot every run
    points = None
    for y, col in enumerate(reversed(ranked)):
        a = np.asarray(attributions[col], dtype=np.float64)
        v = np.asarray(values.get(col, np.full(len(a), np.nan)), dtype=np.float64)
        jitter = y + rng.uniform(-0.3, 0.3, len(a))
        known = ~np.isnan(v)
        ax.scatter(a[~known], jitter[~known], s=6, color="lightgray")
        if known.any():
            rank = np.argsort(np.argsort(v[known], kind="stable"), kind="stable")
            colour = rank / max(1, int(known.sum()) - 1)
            points = ax.scatter(a[known], jitter[known], s=6, c=colour, cmap="coolwarm",
                                vmin=0, vmax=1)
    if ranked:
        ax.set_yticks(range(len(ranked)), list(reversed(ranked)))
        ax.axvline(0, color="gray", linewidth=0.8)
    else:
        _note(ax, "no attributions")
    if points is not None:
        bar = fig.colorbar(points, ax=ax, ticks=[0, 1])
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("column value")
    n = len(next(iter(attributions.values()))) if attributions else 0
    ax.set(xlabel=f"Attribution ({scale.replace('_', ' ')})",
           title=f"Per-row attributions by input column ({n} test rows)")
    return _save(fig, path)
