"""Feature selection and scaling statistics, fitted on the features of the training split.

One streaming pass computes, per batch, the moments of every feature (count, sum, sum of
squares, min, max) and — for the correlation filter — pairwise-complete cross products; the
driver only adds the small per-batch partial sums. Model-importance selection ranks features
by XGBoost gain on a bounded sample of the training split (its first ``sample_rows`` rows,
which the content-keyed split has already put in pseudo-random order).

The outcome is frozen into the pipeline: ``feature_names`` keeps the selected features in
their original order, ``dropped_features`` says why each other one went, and ``scale`` holds
the scaling statistics of the kept features.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pipelines.config import FeaturesConfig
from pipelines.features.columns import ArrowColumns
from pipelines.features.pipeline import FeaturePipeline, ScaleStats

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["Moments", "batch_moments", "correlation_drops", "select_and_scale", "variance_drops"]

logger = logging.getLogger(__name__)


class Moments:
    """Sums over rows of a feature matrix, ignoring NaN; added batch by batch."""

    def __init__(self, k: int, pairs: bool) -> None:
        self.n = np.zeros(k)
        self.sum = np.zeros(k)
        self.m2 = np.zeros(k)  # squared deviations from the mean (stable, see merge)
        self.min = np.full(k, np.inf)
        self.max = np.full(k, -np.inf)
        # Pairwise-complete sums (rows where both features are present), for correlations.
        self.pairs = pairs
        if pairs:
            self.nn = np.zeros((k, k))
            self.sx = np.zeros((k, k))
            self.sxx = np.zeros((k, k))
            self.sxy = np.zeros((k, k))

    def add(self, X: np.ndarray) -> Moments:
        present = ~np.isnan(X)
        X0 = np.where(present, X, 0.0)
        m = present.astype(np.float64)
        batch = Moments(X.shape[1], pairs=False)
        batch.n = m.sum(axis=0)
        batch.sum = X0.sum(axis=0)
        with np.errstate(all="ignore"):
            dev = np.where(present, X - batch.sum / np.maximum(batch.n, 1), 0.0)
        batch.m2 = (dev * dev).sum(axis=0)
        self._merge_moments(batch)
        if len(X):
            with np.errstate(all="ignore"):
                self.min = np.fmin(self.min, np.nanmin(np.where(present, X, np.inf), axis=0))
                self.max = np.fmax(self.max, np.nanmax(np.where(present, X, -np.inf), axis=0))
        if self.pairs:
            self.nn += m.T @ m
            self.sx += X0.T @ m            # sx[i, j]: sum of x_i where x_j is present
            self.sxx += (X0 * X0).T @ m
            self.sxy += X0.T @ X0
        return self

    def _merge_moments(self, other: Moments) -> None:
        # Chan et al.'s parallel variance update.
        n = self.n + other.n
        delta = other.sum / np.maximum(other.n, 1) - self.sum / np.maximum(self.n, 1)
        self.m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / np.maximum(n, 1)
        self.n, self.sum = n, self.sum + other.sum

    def merge(self, other: Moments) -> Moments:
        self._merge_moments(other)
        self.min, self.max = np.fmin(self.min, other.min), np.fmax(self.max, other.max)
        if self.pairs:
            for name in ("nn", "sx", "sxx", "sxy"):
                setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def mean(self) -> np.ndarray:
        return self.sum / np.maximum(self.n, 1)

    def variance(self) -> np.ndarray:
        """Population variance of the present values."""
        return np.maximum(self.m2 / np.maximum(self.n, 1), 0.0)

    def correlation(self) -> np.ndarray:
        nn, sx, sxx, sxy = self.nn, self.sx, self.sxx, self.sxy
        with np.errstate(all="ignore"):
            cov = nn * sxy - sx * sx.T
            var_i = nn * sxx - sx * sx
            var_j = var_i.T
            r = cov / np.sqrt(var_i * var_j)
        return np.where(np.isfinite(r), r, 0.0)


def batch_moments(table: pa.Table, pipeline: FeaturePipeline, pairs: bool) -> dict[str, Any]:
    """The moments of one batch's features, as a one-row batch Ray Data can carry."""
    cols = pipeline._compute(ArrowColumns(table), None)
    X = np.column_stack([cols[n] for n in pipeline.feature_names]) if len(
        pipeline.feature_names) else np.zeros((table.num_rows, 0))
    m = Moments(X.shape[1], pairs).add(X)
    return {"moments": np.array([m], dtype=object)}


def variance_drops(names: list[str], m: Moments, threshold: float) -> dict[str, str]:
    var = m.variance()
    return {n: f"variance {v:.3g} <= {threshold:g}" for n, v in zip(names, var, strict=True)
            if v <= threshold}


def correlation_drops(names: list[str], m: Moments, threshold: float,
                      skip: set[str]) -> dict[str, str]:
    """Of each pair with |r| above the threshold keep the earlier feature, drop the later."""
    r = m.correlation()
    dropped: dict[str, str] = {}
    for j, name in enumerate(names):
        if name in skip:
            continue
        for i in range(j):
            if names[i] in skip or names[i] in dropped:
                continue
            if abs(r[i, j]) > threshold:
                dropped[name] = f"|correlation| {abs(r[i, j]):.3f} with {names[i]!r} > {threshold:g}"
                break
    return dropped


def _importance_drops(train: Dataset, pipeline: FeaturePipeline, top_k: int,
                      sample_rows: int) -> dict[str, str]:
    import xgboost

    sample = train.limit(sample_rows).to_pandas()
    X = pipeline._all_features(sample)[pipeline.feature_names].to_numpy(dtype=np.float64)
    y = pipeline.encode_target(sample[pipeline.target])
    params: dict[str, Any] = {"tree_method": "hist", "max_depth": 6, "eta": 0.3, "seed": 0,
                              "nthread": 1}
    if pipeline.task == "binary":
        params["objective"] = "binary:logistic"
    elif pipeline.task == "multiclass":
        params |= {"objective": "multi:softprob", "num_class": len(pipeline.classes or [])}
    safe = [f"f{i}" for i in range(len(pipeline.feature_names))]
    booster = xgboost.train(params, xgboost.DMatrix(X, label=y, feature_names=safe),
                            num_boost_round=50)
    gain = {k: float(v) if not isinstance(v, list) else float(sum(v))
            for k, v in booster.get_score(importance_type="total_gain").items()}
    ranked = sorted(range(len(safe)), key=lambda i: (-gain.get(safe[i], 0.0), i))
    keep = set(ranked[:top_k])
    return {n: f"gain {gain.get(safe[i], 0.0):.3g} below the top {top_k}"
            for i, n in enumerate(pipeline.feature_names) if i not in keep}


def _moments(train: Dataset, pipeline: FeaturePipeline, pairs: bool) -> Moments:
    parts = train.map_batches(partial(batch_moments, pipeline=pipeline, pairs=pairs),
                              batch_format="pyarrow", zero_copy_batch=True)
    total = Moments(len(pipeline.feature_names), pairs)
    for row in parts.iter_rows():
        total.merge(row["moments"])
    return total


def select_and_scale(train: Dataset, pipeline: FeaturePipeline,
                     features: FeaturesConfig) -> FeaturePipeline:
    """Freeze feature selection and scaling statistics into ``pipeline``."""
    sel = features.selection
    names = list(pipeline.feature_names)
    m = _moments(train, pipeline, pairs=sel.method == "correlation")
    dropped: dict[str, str] = {}
    if sel.method == "variance":
        dropped = variance_drops(names, m, sel.variance_threshold)
    elif sel.method == "correlation":
        constant = variance_drops(names, m, 0.0)
        dropped = constant | correlation_drops(names, m, sel.correlation_threshold, set(constant))
    elif sel.method == "importance":
        dropped = _importance_drops(train, pipeline, sel.top_k, sel.sample_rows)
    kept = [n for n in names if n not in dropped]
    if not kept:
        raise ValueError(f"features.selection ({sel.method}) left no feature; loosen it")
    scale: dict[str, ScaleStats] = {}
    if features.scaling != "none":
        mean, std = m.mean(), np.sqrt(m.variance())
        for i, n in enumerate(names):
            if n in dropped:
                continue
            if features.scaling == "standard":
                shift, div = float(mean[i]), float(std[i])
            else:
                lo, hi = float(m.min[i]), float(m.max[i])
                shift, div = (lo, hi - lo) if np.isfinite(lo) and np.isfinite(hi) else (0.0, 1.0)
            scale[n] = ScaleStats(shift=shift, divisor=div if div > 1e-12 else 1.0)
    if dropped:
        logger.info("feature selection (%s) dropped %d of %d features", sel.method,
                    len(dropped), len(names))
    return pipeline.model_copy(update={"feature_names": kept, "dropped_features": dropped,
                                       "scale": scale})
