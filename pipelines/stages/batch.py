"""Batch inference: a Ray Data actor pool applies the registered model to raw rows.

The driver loads the model once from MLflow and puts it in the object store; each actor of the
pool takes it from there once (``PyfuncPredictor.__init__``) and scores Arrow batches; the
result streams to Parquet, so memory stays bounded by Ray Data's streaming budget however large
the input. Every input row ends up in exactly one place: the predictions (with the configured id
columns and the model version) or, when the model cannot read one of its values, the
quarantine folder with the reason. :func:`run_batch_inference` checks that the counts add up.

Actors take fractional CPUs (``batch.num_cpus_per_actor``): a pool whose actors hold every CPU
starves the read tasks that feed it, and on a 2-CPU machine the job hangs.
"""

from __future__ import annotations

import gc
import hashlib
import io
import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from pipelines.config import BatchConfig
from pipelines.errors import RaypipeError
from pipelines.storage.location import storage_path

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = [
    "REASON_COLUMN",
    "BatchResult",
    "PyfuncPredictor",
    "UnscorableRowsError",
    "check_rows",
    "count_parquet_rows",
    "pool_size",
    "predict_dataset",
    "run_batch_inference",
    "score_batch",
]

logger = logging.getLogger(__name__)

REASON_COLUMN = "_quarantine_reason"


class UnscorableRowsError(RaypipeError, ValueError):
    """Rows the model cannot score, and no quarantine folder to put them in."""


@dataclass(frozen=True)
class BatchResult:
    """What one batch inference run wrote."""

    rows_in: int
    rows_predicted: int
    rows_quarantined: int
    output_dir: str
    quarantine_dir: str
    model_version: str


def score_batch(batch: pd.DataFrame, model: Any, *, keep: list[str] | None,
                version_column: str, checked: bool = False,
                explain: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one batch: ``(predictions, quarantined)``, together exactly the input rows.

    ``model`` is a :class:`pipelines.model.engine.LoadedModel`. Predictions carry the ``keep``
    input columns (all when None), the prediction columns and ``version_column``; quarantined
    rows carry every input column and the reason in ``_quarantine_reason``. ``checked``: the
    rows already passed :func:`check_rows`, so only the model itself can still refuse one.
    ``explain``: add the attribution columns (:func:`pipelines.model.explain.explanation_columns`).
    """
    from pipelines.model.schema import row_reasons

    batch = batch.reset_index(drop=True)
    if checked:
        good, quarantined = batch, batch.iloc[:0].assign(**{REASON_COLUMN: pd.Series(dtype=str)})
    else:
        reasons = row_reasons(batch, model.pipeline)
        bad = reasons.notna().to_numpy()
        good = batch[~bad]
        quarantined = batch[bad].assign(**{REASON_COLUMN: reasons[bad].astype(str)})
    preds = _predict(good, model)
    if REASON_COLUMN in preds:
        # Rows that passed the checks yet broke the model on their own (see _predict).
        failed = preds[REASON_COLUMN].notna().to_numpy()
        quarantined = pd.concat([quarantined, good[failed].assign(
            **{REASON_COLUMN: preds.loc[failed, REASON_COLUMN].astype(str).to_numpy()})],
            ignore_index=True)
        good, preds = good[~failed], preds[~failed].drop(columns=[REASON_COLUMN])
    out = (good if keep is None else good[keep]).reset_index(drop=True)
    for col in preds.columns:
        out[col] = preds[col].to_numpy()
    if explain:
        for col, values in _explain(good, model).items():
            out[col] = values
    out[version_column] = model.version
    return out, quarantined.reset_index(drop=True)


def _explain(rows: pd.DataFrame, model: Any) -> dict[str, Any]:
    from pipelines.model.engine import family_of
    from pipelines.model.explain import explain_frame, explanation_columns
    from pipelines.model.spec import conform_input

    explanation = explain_frame(model.spec, model.predictor, family_of(model),
                                conform_input(rows, model.spec, for_pipeline=True),
                                conformed=True)
    # Multiclass: the predicted class's attributions.
    return explanation_columns(explanation, explanation.predicted_class)


def _predict(rows: pd.DataFrame, model: Any) -> pd.DataFrame:
    # Imported here: pipelines.model imports MLflow (0.7 s), which the read tasks that run
    # check_rows never need.
    from pipelines.model.spec import conform_input, predict_frame

    try:
        return predict_frame(model.spec, model.predictor,
                             conform_input(rows, model.spec, for_pipeline=True))
    except Exception as err:
        if rows.empty:
            raise
        # One row can break a whole batch; score row by row to keep the others.
        logger.warning("batch of %d rows failed (%s); scoring row by row", len(rows), err)
    parts = []
    for i in range(len(rows)):
        one = rows.iloc[i:i + 1]
        try:
            parts.append(predict_frame(model.spec, model.predictor,
                                       conform_input(one, model.spec, for_pipeline=True)))
        except Exception as err:
            parts.append(pd.DataFrame({REASON_COLUMN: [f"model failed: {type(err).__name__}: "
                                                       f"{str(err)[:200]}"]}))
    return pd.concat(parts, ignore_index=True)


class PyfuncPredictor:
    """Holds the model (once per actor); appends its predictions to each batch.

    Rows the model cannot score are written to ``quarantine_dir`` (one Parquet file per batch
    that has any, every column as text, named by content so a retried batch rewrites rather
    than duplicates it).
    """

    def __init__(self, model: list[Any], keep: list[str] | None = None,
                 version_column: str = "model_version", quarantine_dir: str | None = None,
                 explain: bool = False) -> None:
        import ray

        # ``model``: [ref] to the LoadedModel the driver put in the object store. Each actor
        # deserialises it (milliseconds) instead of resolving and downloading it from MLflow
        # (3.2-3.6 s per actor here, before the first batch).
        self.model = ray.get(model[0])
        # Pandas allocates heavily per batch; full collections that re-scan the worker's
        # long-lived objects (Ray, MLflow, the model) cost more than the prediction itself.
        gc.collect()
        gc.freeze()
        self.keep = keep
        self.version_column = version_column
        self.quarantine_dir = quarantine_dir
        self.explain = explain

    def __call__(self, block: pa.Table) -> pa.Table:
        # Arrow in and out, converted here: Ray Data's pandas batches hold Arrow-backed columns
        # (``double[pyarrow]``, ...), on which the pipeline's pandas code ran 2.7x slower
        # (0.25 s against 0.094 s per 65,536 rows), and its own conversions cost as much again.
        out = self.score(block.to_pandas())
        return pa.Table.from_pandas(out, preserve_index=False)

    def score(self, batch: pd.DataFrame) -> pd.DataFrame:
        # Every batch here passed check_rows on its way from the reader.
        out, quarantined = score_batch(batch, self.model, keep=self.keep,
                                       version_column=self.version_column, checked=True,
                                   explain=self.explain)
        if len(quarantined):
            if self.quarantine_dir is None:
                raise UnscorableRowsError(
                    f"{len(quarantined)} rows cannot be scored, e.g. "
                    f"{quarantined[REASON_COLUMN].iloc[0]}")
            _write_quarantine(quarantined, self.quarantine_dir)
        return out


def _write_quarantine(rows: pd.DataFrame, directory: str) -> None:
    # As text: batches of one input can disagree on a column's type (a CSV column with an
    # unparseable value reads as strings), and the folder must stay readable as one data set.
    buf = io.BytesIO()
    rows.astype("string").to_parquet(buf, index=False)
    data = buf.getvalue()
    # One atomic put, local or object store: readers never see half a file.
    (storage_path(directory) / f"part-{hashlib.sha1(data).hexdigest()[:16]}.parquet").write_bytes(data)


_CANONICAL = {"float": "float64", "bool": "boolean", "string": "string",
              "datetime": "datetime64[us]"}


def check_rows(batch: pd.DataFrame, *, pipeline: Any, quarantine_dir: str | None) -> pd.DataFrame:
    """Quarantine the rows the model cannot read; give the rest one type per model column.

    Runs per read block, before blocks of different files meet: two CSV files can infer
    different types for one column (a timestamp here, text with a bad value there), and Ray
    Data cannot concatenate such blocks. The rows kept keep their index.
    """
    from pipelines.model.schema import row_reasons

    reasons = row_reasons(batch, pipeline)
    bad = reasons.notna().to_numpy()
    if bad.any():
        quarantined = batch[bad].assign(**{REASON_COLUMN: reasons[bad].astype(str)})
        if quarantine_dir is None:
            raise UnscorableRowsError(f"{int(bad.sum())} rows cannot be scored, e.g. "
                                      f"{quarantined[REASON_COLUMN].iloc[0]}")
        _write_quarantine(quarantined, quarantine_dir)
        batch = batch[~bad]
    out = batch.copy(deep=False)  # the rows kept keep their index: _check_block reads it
    for c, kind in pipeline.input_schema.items():
        if c not in out.columns:
            continue
        if kind == "float":
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        elif kind == "datetime":
            out[c] = pd.to_datetime(out[c], errors="coerce", format="mixed")
            if getattr(out[c].dt, "tz", None) is None:
                out[c] = out[c].astype(_CANONICAL["datetime"])
        else:
            out[c] = out[c].astype(_CANONICAL[kind])
    return out


# Arrow types of the model's columns after the check, whichever path a block took.
_ARROW_KINDS = {"float": pa.float64(), "bool": pa.bool_(), "string": pa.large_string(),
                "datetime": pa.timestamp("us")}


def _check_block(block: pa.Table, *, pipeline: Any, quarantine_dir: str | None) -> pa.Table:
    """:func:`check_rows` on an Arrow block (see ``PyfuncPredictor.__call__`` for why).

    Model columns come out in one Arrow type per kind, other columns as they came in, so blocks
    that took either path concatenate.
    """
    ready = _typed_block(block, pipeline)
    if ready is not None:
        return ready
    checked = check_rows(block.to_pandas(), pipeline=pipeline, quarantine_dir=quarantine_dir)
    out = pa.Table.from_pandas(checked, preserve_index=False)
    kept = block.take(pa.array(checked.index.to_numpy(), pa.int64()))  # positions: RangeIndex in
    columns = [_canonical(out.column(c), pipeline.input_schema[c]) if c in pipeline.input_schema
               else kept.column(c) for c in block.column_names]
    return pa.table(columns, names=block.column_names)


def _canonical(col: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    # Time zone-aware datetimes keep their zone (and unit); the model reads them as such.
    if kind == "datetime" and getattr(col.type, "tz", None) is not None:
        return col
    return col.cast(_ARROW_KINDS[kind])


def _typed_block(block: pa.Table, pipeline: Any) -> pa.Table | None:
    """The block with its model columns in their Arrow types when those types already prove
    every value readable (Parquet written from typed data); None when the rows need
    :func:`check_rows`.

    Milliseconds per block where the pandas check took 17 ms per 65,536 rows, on the one read
    task a single input file gets.
    """
    import pyarrow.compute as pc

    columns = dict(zip(block.column_names, block.columns, strict=True))
    for name, kind in pipeline.input_schema.items():
        col = columns.get(name)
        if col is None:
            continue
        t = col.type
        if kind == "float":
            if pa.types.is_floating(t):
                if pc.any(pc.is_inf(col)).as_py():  # quarantined, with a reason, by check_rows
                    return None
            elif not pa.types.is_integer(t):
                return None
        elif kind == "datetime":
            # Nanoseconds: the pandas path decides what a sub-microsecond value becomes.
            if not (pa.types.is_timestamp(t) and t.tz is None and t.unit != "ns"):
                return None
        elif kind == "bool":
            if not pa.types.is_boolean(t):
                return None
        elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return None
        columns[name] = col.cast(_ARROW_KINDS[kind])
    return pa.table(list(columns.values()), names=list(columns))


def _check_explain(model: Any, kept: list[str], version_column: str) -> None:
    """Refuse ``batch.explain`` in the driver, before any actor starts, when it cannot work."""
    from pipelines.model.engine import family_of
    from pipelines.model.explain import BIAS_COLUMN, CONTRIBUTION_PREFIX, check_explainable

    check_explainable(family_of(model))
    added = {f"{CONTRIBUTION_PREFIX}{c}" for c in model.pipeline.input_schema} | {BIAS_COLUMN}
    clash = sorted(added & {*kept, version_column})
    if clash:
        raise ValueError(f"batch.explain: output column(s) {clash} would overwrite input "
                         "columns of the same name; leave them out with batch.id_columns")


def predict_dataset(
    ds: Dataset, *, model_uri: str, tracking_uri: str | None, cfg: BatchConfig,
    quarantine_dir: str | None = None, rows: int | None = None,
) -> Dataset:
    """Predict every row of ``ds``: the output has the id columns plus predictions.

    Without ``quarantine_dir`` an unscorable row fails the run (rows that passed the data
    contract always score); with it, such rows go there with the reason. ``rows`` (the row
    count of ``ds``, when known) sizes the actor pool: see :func:`pool_size`.
    """
    import ray.data

    keep = cfg.id_columns
    if keep is not None:
        missing = [c for c in keep if c not in (ds.columns() or [])]
        if missing:
            raise ValueError(f"batch.id_columns {missing} are not input columns")
    if cfg.max_object_store_bytes is not None:
        # The dataset's own context (a copy per dataset): other datasets keep their budget.
        limits = ds.context.execution_options.resource_limits
        ds.context.execution_options.resource_limits = limits.copy(
            object_store_memory=cfg.max_object_store_bytes)
    import mlflow

    from pipelines.model.engine import load_model

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    model = load_model(model_uri, check_fast_path=False)
    pipeline = model.pipeline
    if cfg.explain:
        _check_explain(model, keep if keep is not None else list(ds.columns() or []),
                       cfg.model_version_column)
    # The check takes the actors' CPU fraction, not a whole CPU: a read task paused by
    # backpressure keeps its CPU, so on a small node a whole-CPU check could not be scheduled
    # beside it and the actors' share. Under an object-store budget that made each block wait
    # ~10 s (150k rows: 137 s against 9 s); without one, 2.4M rows on 2 CPUs and an 80 MiB
    # store hung for good (the read waiting for the check, the check for a CPU). It is also
    # faster now: 700k rows 5.4 s against 10.5-11 s, 150k rows the same (2 CPUs, 2026-12-04).
    checked = ds.map_batches(partial(_check_block, pipeline=pipeline,
                                     quarantine_dir=quarantine_dir),
                             batch_format="pyarrow", batch_size=None,
                             num_cpus=cfg.num_cpus_per_actor)
    # Without the MLflow signature (the actors never parse requests): unpickling it would import
    # MLflow in every actor, 0.75 s of CPU before its first batch.
    shipped = replace(model, input_schema=None)
    # Readers hand over a file's rows as a few big blocks; split them (streaming, no shuffle)
    # so that every actor of the pool gets work, and each call sees one batch.
    return checked.repartition(target_num_rows_per_block=cfg.batch_size).map_batches(
        PyfuncPredictor,
        fn_constructor_kwargs={
            "model": [ray.put(shipped)], "keep": keep,
            "version_column": cfg.model_version_column, "quarantine_dir": quarantine_dir,
            "explain": cfg.explain,
        },
        batch_format="pyarrow",
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=pool_size(cfg, rows)),
        num_cpus=cfg.num_cpus_per_actor,
    )


def pool_size(cfg: BatchConfig, rows: int | None) -> int:
    """Predictor actors for ``rows`` input rows: ``cfg.concurrency``, but no more than there
    are batches to score. Each actor loads the model (MLflow, the family's libraries: 2-3 s of
    CPU), so a second actor for a test split of one batch costs the demo seconds and scores
    nothing; an unknown count gets the configured pool."""
    if rows is None:
        return cfg.concurrency
    return max(1, min(cfg.concurrency, -(-rows // cfg.batch_size)))


def run_batch_inference(
    ds: Dataset, *, model_uri: str, tracking_uri: str | None, cfg: BatchConfig,
    output_dir: str, rows_in: int | None = None, overwrite: bool = False,
) -> BatchResult:
    """Score ``ds`` into Parquet under ``output_dir``; check every row is accounted for.

    ``rows_in`` is the input row count when the caller knows it cheaply (see
    :func:`count_parquet_rows`); else the dataset is counted with a Ray job first. The rows are
    written to a sibling folder that replaces ``output_dir`` only when the counts add up
    (:func:`pipelines.outputs.replacing`): a failed run leaves the previous output as it was.
    ``overwrite`` allows replacing a folder an earlier run wrote, never another one.
    """
    from pipelines.model.engine import resolve_model
    from pipelines.outputs import relative_to, replacing

    if tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
    ref = resolve_model(model_uri)
    expected = ds.count() if rows_in is None else rows_in
    # The quarantine moves with the predictions when it lies in their folder (the default).
    quarantine = cfg.quarantine_dir or f"{output_dir.rstrip('/')}/_quarantine"
    inner = relative_to(quarantine, output_dir)
    writer = {"command": "predict", "model_uri": ref.uri, "model_version": ref.version}
    with replacing(output_dir, overwrite=overwrite, writer=writer) as staging:
        write_quarantine = quarantine if inner is None else f"{staging}/{inner}".rstrip("/")
        # Pin the version so that every actor scores with the same one, whatever the alias does.
        predicted = predict_dataset(ds, model_uri=ref.uri, tracking_uri=tracking_uri, cfg=cfg,
                                    quarantine_dir=write_quarantine, rows=expected)
        # Ray deprecates min_rows_per_file together with partition columns.
        predicted.write_parquet(staging, partition_cols=cfg.partition_cols or None,
                                min_rows_per_file=None if cfg.partition_cols
                                else cfg.min_rows_per_file)
        rows_out = _parquet_rows(staging)
        rows_bad = _parquet_rows(write_quarantine)
        if rows_out + rows_bad != expected:
            raise RuntimeError(f"batch inference lost rows: {expected} in, {rows_out} predicted "
                               f"+ {rows_bad} quarantined")
    logger.info("batch inference: %d rows in, %d predicted, %d quarantined", expected, rows_out,
                rows_bad)
    return BatchResult(rows_in=expected, rows_predicted=rows_out, rows_quarantined=rows_bad,
                       output_dir=output_dir, quarantine_dir=quarantine, model_version=ref.version)


def count_parquet_rows(path: str | list[str]) -> int:
    """Rows in Parquet files or a folder, from the footers (files named ``_*``/``.*`` skipped).

    Milliseconds, where ``Dataset.count()`` runs a Ray job over the files.
    """
    import pyarrow.dataset as pads

    try:
        return int(pads.dataset(path, format="parquet", partitioning="hive").count_rows())
    except FileNotFoundError:
        return 0


_parquet_rows = count_parquet_rows
