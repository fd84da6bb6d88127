"""Which input columns each feature of a fitted pipeline is computed from.

Explanations (:mod:`pipelines.model.explain`) attribute a prediction to the model's features;
users ask about the columns they sent. This walks the fitted pipeline in the order
:meth:`FeaturePipeline._compute` builds features, so a ratio, a derived expression or a bin
of a derived feature traces back through the features it reads to raw input columns.
"""

from __future__ import annotations

import numpy as np

from pipelines.expressions import referenced_columns
from pipelines.features.pipeline import (
    BIN_SUFFIX,
    MISSING_SUFFIX,
    FeaturePipeline,
    feature_name,
)

__all__ = ["attribution_matrix", "feature_origins"]


def feature_origins(pipeline: FeaturePipeline) -> dict[str, tuple[str, ...]]:
    """Input columns of every feature the pipeline outputs, keyed by feature name."""
    raw: dict[str, tuple[str, ...]] = {}

    def of(name: str) -> tuple[str, ...]:
        # A name a ratio, expression or bin reads: an earlier feature, else an input column.
        return raw.get(name, (name,))

    for c, st in pipeline.numeric.items():
        raw[c] = (c,)
        if st.indicator:
            raw[c + MISSING_SUFFIX] = (c,)
    for c in pipeline.boolean:
        raw[c] = (c,)
    for c, cst in pipeline.categorical.items():
        encoding = cst.encoding or pipeline.encoding
        if encoding == "hashed":
            names = [f"{c}__hash{i}" for i in range(pipeline.hash_buckets)]
        elif encoding == "ordinal":
            names = [c]
        else:
            names = [f"{c}={cat}" for cat in cst.vocab] + [f"{c}=__other__"]
        if cst.indicator:
            names.append(c + MISSING_SUFFIX)
        raw.update({n: (c,) for n in names})
    for c in pipeline.datetime:
        raw.update({f"{c}_{part}": (c,) for part in pipeline.datetime_parts})
    for r in pipeline.ratios:
        raw[r.name] = _union(of(r.numerator), of(r.denominator))
    for d in pipeline.derived:
        raw[d.name] = _union(*(of(c) for c in referenced_columns(d.name, d.expr)))
    for b in pipeline.bins:
        raw[b.column + BIN_SUFFIX] = of(b.column)
    named = {feature_name(k): v for k, v in raw.items()}
    return {f: named[f] for f in pipeline.feature_names}


def attribution_matrix(pipeline: FeaturePipeline) -> np.ndarray:
    """A (features x input columns) matrix that sums feature attributions into input columns.

    A feature computed from one column gives it its whole attribution; one computed from
    several (a ratio, a derived expression) splits it equally among them, as no split is more
    right than another. Every row sums to 1, so attributions per column still add up (with
    the bias) to the model's output.
    """
    inputs = {c: j for j, c in enumerate(pipeline.input_schema)}
    origins = feature_origins(pipeline)
    m = np.zeros((len(pipeline.feature_names), len(inputs)), dtype=np.float64)
    for i, f in enumerate(pipeline.feature_names):
        cols = [inputs[c] for c in origins[f] if c in inputs]
        if not cols:  # cannot happen for a pipeline fitted by raypipe; guard the invariant
            raise ValueError(f"feature {f!r} traces to no input column ({origins[f]})")
        m[i, cols] = 1.0 / len(cols)
    return m


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for g in groups for c in g))
