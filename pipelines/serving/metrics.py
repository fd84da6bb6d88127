"""Prometheus metrics of the Serve app, through Ray's metrics (exported by every Ray node).

Ray Serve already exports per-deployment request counts, latencies, queue lengths and its own
batching histograms (``ray_serve_*``); these add what only the app knows:

- ``raypipe_requests_total{endpoint, status}`` and ``raypipe_request_latency_ms{endpoint}``
- ``raypipe_batch_rows`` — rows per model call after dynamic batching
- ``raypipe_predictions_total{model_version, label}`` — the predicted label distribution
- ``raypipe_prediction_score_total{model_version, bucket}`` — positive-class probability (binary)
  or predicted-class probability (multiclass) in 0.1-wide buckets; regression values are
  counted in decade buckets in ``raypipe_prediction_value_total{model_version, bucket}``
- ``raypipe_model_version_info{model, version}`` — 1 for the version being served, else 0
- ``raypipe_model_swaps_total{outcome}`` — hot swaps done and failed
- ``raypipe_request_log_rows_total{outcome}`` — request log rows written or dropped

Serve adds the ``deployment``, ``replica`` and ``application`` tags.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from pipelines.model.engine import LoadedModel, Outputs
from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN

__all__ = ["ServingMetrics"]

_LATENCY_MS = [1.0, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2500, 5000]
_ROWS = [1.0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384]
_SCORE_EDGES = np.linspace(0.0, 1.0, 11)
_SCORE_BUCKETS = [f"{lo:.1f}-{hi:.1f}" for lo, hi in pairwise(_SCORE_EDGES)]
_VALUE_EDGES = np.array([-np.inf, -1e3, -1e2, -10, -1, 0, 1, 10, 1e2, 1e3, np.inf])
_VALUE_BUCKETS = [f"{lo:g}..{hi:g}" for lo, hi in pairwise(_VALUE_EDGES)]
_MAX_LABELS = 50


def _tags(*keys: str) -> Any:
    # Ray's stubs type tag_keys as a 1-tuple; any tuple of names works.
    return tuple(keys)


class ServingMetrics:
    """The app's metrics; one instance per replica."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter(
            "raypipe_requests_total", description="HTTP requests answered, by endpoint and status.",
            tag_keys=_tags("endpoint", "status"))
        self.latency = metrics.Histogram(
            "raypipe_request_latency_ms", description="Time to answer a request in the replica.",
            boundaries=_LATENCY_MS, tag_keys=_tags("endpoint",))
        self.batch_rows = metrics.Histogram(
            "raypipe_batch_rows", description="Rows per model call after dynamic batching.",
            boundaries=_ROWS)
        self.predictions = metrics.Counter(
            "raypipe_predictions_total", description="Rows predicted, by predicted label.",
            tag_keys=_tags("model_version", "label"))
        self.scores = metrics.Counter(
            "raypipe_prediction_score_total",
            description="Predicted probabilities in 0.1-wide buckets.",
            tag_keys=_tags("model_version", "bucket"))
        self.values = metrics.Counter(
            "raypipe_prediction_value_total",
            description="Predicted values (regression) in decade buckets.",
            tag_keys=_tags("model_version", "bucket"))
        self.model_info = metrics.Gauge(
            "raypipe_model_version_info", description="1 for the model version being served.",
            tag_keys=_tags("model", "version"))
        self.swaps = metrics.Counter(
            "raypipe_model_swaps_total", description="Hot model swaps, by outcome.",
            tag_keys=_tags("outcome",))
        self.log_rows = metrics.Counter(
            "raypipe_request_log_rows_total",
            description="Request log rows, by outcome: written to Parquet or dropped (queue "
                        "full or storage failing).",
            tag_keys=_tags("outcome",))

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"endpoint": endpoint, "status": str(status)})
        self.latency.observe(seconds * 1000.0, tags={"endpoint": endpoint})

    def batch(self, rows: int) -> None:
        self.batch_rows.observe(float(rows))

    def predicted(self, model: LoadedModel, outputs: Outputs) -> None:
        version = model.version
        task = model.pipeline.task
        preds = outputs[PREDICTION_COLUMN]
        if task == "regression":
            values = np.asarray(preds, dtype=np.float64)
            hist, _ = np.histogram(values[np.isfinite(values)], bins=_VALUE_EDGES)
            for bucket, count in zip(_VALUE_BUCKETS, hist, strict=True):
                if count:
                    self.values.inc(float(count), tags={"model_version": version,
                                                        "bucket": bucket})
            return
        labels, counts = np.unique(np.asarray(preds).astype(str), return_counts=True)
        for label, count in list(zip(labels, counts, strict=True))[:_MAX_LABELS]:
            self.predictions.inc(float(count), tags={"model_version": version,
                                                     "label": str(label)})
        hist, _ = np.histogram(np.clip(outputs[PROBABILITY_COLUMN], 0.0, 1.0), bins=_SCORE_EDGES)
        for bucket, count in zip(_SCORE_BUCKETS, hist, strict=True):
            if count:
                self.scores.inc(float(count), tags={"model_version": version, "bucket": bucket})

    def swapped(self, old: LoadedModel | None, new: LoadedModel) -> None:
        if old is not None:
            self.model_info.set(0, tags={"model": old.name, "version": old.version})
            self.swaps.inc(tags={"outcome": "loaded"})
        self.model_info.set(1, tags={"model": new.name, "version": new.version})

    def log_written(self, rows: int) -> None:
        self.log_rows.inc(float(rows), tags={"outcome": "written"})

    def log_dropped(self, rows: int) -> None:
        self.log_rows.inc(float(rows), tags={"outcome": "dropped"})

    def swap_failed(self) -> None:
        self.swaps.inc(tags={"outcome": "failed"})

