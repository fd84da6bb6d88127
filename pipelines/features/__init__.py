"""The fitted feature pipeline: fit on the training split, transform everywhere, select, stats.

:mod:`~pipelines.features.pipeline` (the frozen :class:`FeaturePipeline` and its transform),
:mod:`~pipelines.features.fit` (fitting it on a Ray Dataset), :mod:`~pipelines.features.select`
(selection and scaling), :mod:`~pipelines.features.stats` (streaming column statistics) and
:mod:`~pipelines.features.columns` (column access over Arrow and pandas batches).
"""

from pipelines.features.fit import FeatureConfigError, fit_feature_pipeline
from pipelines.features.pipeline import (
    BinStats,
    CategoricalStats,
    ColumnKind,
    FeaturePipeline,
    MissingColumnsError,
    NumericStats,
    ScaleStats,
    clean_strings,
    encode_codes,
    hash_buckets,
    infer_task,
)

__all__ = [
    "BinStats",
    "CategoricalStats",
    "ColumnKind",
    "FeatureConfigError",
    "FeaturePipeline",
    "MissingColumnsError",
    "NumericStats",
    "ScaleStats",
    "clean_strings",
    "encode_codes",
    "fit_feature_pipeline",
    "hash_buckets",
    "infer_task",
]
