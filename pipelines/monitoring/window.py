"""A monitoring window on Ray Data: counts of every monitored column in the reference's bins,
and the live quality of predictions whose labels arrived later.

Each block is reduced to one row of counts (:func:`batch_counts`, plain pandas), so a window of
any size streams through the cluster and only the small count vectors reach the driver.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.monitoring.drift import ColumnCounts, column_counts, merge_counts
from pipelines.monitoring.reference import Reference

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["TIME_COLUMN", "WindowCounts", "batch_counts", "count_window", "filter_time",
           "live_quality", "read_table", "split_monitored"]

logger = logging.getLogger(__name__)

TIME_COLUMN = "timestamp"
"""The request time column of request logs (UTC)."""
_PREDICTION_KEY = "__prediction__"


@dataclass(frozen=True)
class WindowCounts:
    rows: int
    features: dict[str, ColumnCounts]
    """Counts of the monitored columns the window holds."""
    prediction: ColumnCounts
    not_logged: list[str] = field(default_factory=list)
    """Monitored columns the window lacks (e.g. kept out of the request log): not compared."""


def split_monitored(reference: Reference, have: set[str]) -> tuple[Reference, list[str]]:
    """(the reference cut to the monitored columns in ``have``, the monitored columns not in
    it). A column kept out of the request log cannot drift-check; the rest still can."""
    missing = [c for c in reference.features if c not in have]
    kept = {c: p for c, p in reference.features.items() if c in have}
    return reference.model_copy(update={"features": kept}), missing


def read_table(path: str, fmt: str | None = None) -> Dataset:
    """Read a window or labels table: Parquet (request logs, batch output), CSV or JSON Lines.

    Raises:
        pipelines.stages.ingest.InputError: nothing readable at ``path``.
    """
    from pipelines.stages.ingest import read_files

    if fmt is None:
        suffix = path.rstrip("/*").rsplit(".", 1)[-1].lower() if "." in path else ""
        fmt = {"csv": "csv", "json": "json", "jsonl": "json"}.get(suffix, "parquet")
    return read_files(path, fmt)


def _utc(text: str) -> pd.Timestamp:
    t = pd.Timestamp(text)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _in_range(batch: pd.DataFrame, since: str | None, until: str | None) -> pd.DataFrame:
    """Rows whose request time lies in [since, until); naive times are UTC."""
    if since is None and until is None:
        return batch
    ts = pd.to_datetime(batch[TIME_COLUMN], utc=True, errors="coerce")
    keep = pd.Series(True, index=batch.index)
    if since is not None:
        keep &= ts >= _utc(since)
    if until is not None:
        keep &= ts < _utc(until)
    return batch[keep.to_numpy()]


def filter_time(ds: Dataset, since: str | None, until: str | None) -> Dataset:
    """The rows of ``ds`` whose request time lies in [since, until).

    Raises:
        ValueError: ``ds`` has no request time column.
    """
    if TIME_COLUMN not in ds.columns():
        raise ValueError(f"a time range needs the {TIME_COLUMN!r} column of request logs; the "
                         f"window has {ds.columns()}")
    return ds.map_batches(partial(_in_range, since=since, until=until), batch_format="pandas")


def batch_counts(batch: pd.DataFrame, *, reference: str, since: str | None = None,
                 until: str | None = None) -> pd.DataFrame:
    """One block of the window as one row: ``counts`` holds the JSON of every column's counts.

    ``reference`` is the :class:`Reference` as JSON (cheap to ship to every task).
    """
    ref = Reference.model_validate_json(reference)
    rows = _in_range(batch, since, until)
    out: dict[str, Any] = {
        c: column_counts(rows[c], p, ref.normalize_categories).model_dump()
        for c, p in ref.features.items()
    }
    out[_PREDICTION_KEY] = column_counts(rows[ref.prediction_column], ref.prediction,
                                         normalize=False).model_dump()
    return pd.DataFrame({"rows": [len(rows)], "counts": [json.dumps(out)]})


def count_window(ds: Dataset, reference: Reference, *, since: str | None = None,
                 until: str | None = None, origin: str = "window") -> WindowCounts:
    """Count a whole window (Ray Data, one row of counts per block, summed on the driver).

    Monitored columns the window lacks are left out and named in ``not_logged``.

    Raises:
        ValueError: the window lacks the prediction or the time column.
    """
    have = set(ds.columns())
    reference, not_logged = split_monitored(reference, have)
    if not_logged:
        logger.warning("%s lacks monitored column(s) %s (not logged?): no drift computed for "
                       "them", origin, not_logged)
    needed = [*reference.features, reference.prediction_column]
    if since is not None or until is not None:
        needed.append(TIME_COLUMN)
    missing = [c for c in needed if c not in have]
    if missing:
        raise ValueError(f"{origin} lacks column(s) {missing} the monitor needs; it has "
                         f"{sorted(have)}")
    kernel = partial(batch_counts, reference=reference.model_dump_json(), since=since,
                     until=until)
    counted = ds.select_columns(list(dict.fromkeys(needed))).map_batches(
        kernel, batch_format="pandas", batch_size=65_536)
    rows = 0
    features: dict[str, ColumnCounts] = {c: ColumnCounts() for c in reference.features}
    prediction = ColumnCounts()
    for row in counted.iter_rows():
        rows += int(row["rows"])
        parts = json.loads(row["counts"])
        for c in features:
            features[c] = merge_counts(features[c], ColumnCounts.model_validate(parts[c]))
        prediction = merge_counts(prediction,
                                  ColumnCounts.model_validate(parts[_PREDICTION_KEY]))
    return WindowCounts(rows=rows, features=features, prediction=prediction,
                        not_logged=not_logged)


def live_quality(window: Dataset, labels: Dataset, *, id_column: str, reference: Reference,
                 classes: list[Any] | None) -> tuple[dict[str, float], int]:
    """(metrics, labelled rows) of the window's predictions joined with late labels by id.

    The join is Ray Data's hash join, so neither side has to fit on the driver; only the
    joined label and prediction columns are evaluated, in one task.

    Raises:
        ValueError: the id or label column is missing, or no logged row has a label.
    """
    from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN
    from pipelines.stages.evaluate import evaluate_predictions

    target = reference.target
    for name, ds, cols in (("window", window, [id_column, PREDICTION_COLUMN]),
                           ("labels", labels, [id_column, target])):
        missing = [c for c in cols if c not in ds.columns()]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing} for joining labels; it has "
                             f"{ds.columns()}")
    preds = [c for c in window.columns()
             if c == PREDICTION_COLUMN or c.startswith(PROBABILITY_COLUMN)]
    left = window.select_columns([id_column, *preds])
    right = labels.select_columns([id_column, target])
    import ray

    # One partition per CPU: each is joined in its own task, sized to the cluster.
    partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
    joined = left.join(right, join_type="inner", num_partitions=partitions,
                       on=(id_column,)).materialize()
    rows = joined.count()
    if rows == 0:
        raise ValueError(f"no row of the window has a label: no {id_column} value is in both")
    evaluation = evaluate_predictions(joined, target=target, task=reference.task,
                                      classes=classes)
    return dict(evaluation.metrics), rows
