"""Batch inference on raw rows three times the size of a small object store, in a Ray of its own.

Run by ``test_batch_at_scale.py::test_batch_inference_three_times_the_object_store`` as
``python -m tests.integration.batch_at_scale WORK_DIR``: it logs the unit tests' small XGBoost
model (:func:`tests.unit.model.helpers.make_model`) as raypipe's pyfunc model to an MLflow of its
own (SQLite in ``WORK_DIR``), the way the register stage does (:func:`log_pipeline_model`), writes
generated raw rows of that model's schema as Parquet, starts Ray with an object store of
``STORE_BYTES`` (the shared test instance has a fixed, larger one), scores the rows with
:func:`run_batch_inference`, predicts a sample in process with the in-memory model, and writes
the counts, the figures and both samples to ``WORK_DIR/result.json``.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pipelines.model.engine import LoadedModel

STORE_BYTES = 80 * 2**20
FILES = 16
ROWS_PER_FILE = 150_000  # 2.4M rows, ~115 bytes each in Arrow: about 3.3x STORE_BYTES
# Output rows per Parquet file. The default (1M rows, ~66 MB of predictions here) makes the
# write wait for most of an 80 MiB store: a run with it finished, every row accounted for, but
# in 224 s, the predictor actors output-backpressured for 195 s of it while 386 MiB spilled and
# came back. With a fifth of that it took 93 s (on a loaded 2-CPU machine). Those runs read the
# files with Ray Data's default reader, which put all 16 in one read task; the product's file
# source (read here now) reads them in several and streams: 65 s on a quiet 2-CPU machine.
MIN_ROWS_PER_FILE = 200_000
SAMPLE = 1_000  # rows of the first file predicted in process as well
PLANS = np.array([" BASIC", "premium ", "Standard", "gold"])  # odd spellings, an unknown plan
REGIONS = np.array(["north", "SOUTH", " <east> ", "west"])
# Free text the model ignores (an optional column): it makes the rows as wide as real ones.
NOTES = np.array([f"customer note {i:04d}: " + "called about the bill; " * 2 for i in range(500)])


def _rows(n: int, seed: int, first_id: int) -> pa.Table:
    """Raw rows of the unit model's schema (:data:`tests.unit.model.helpers.SCHEMA`), a sixth
    of each column missing, plus a ``row_id`` to match predictions to their rows. Typed Arrow
    columns, as Parquet written from typed data has them."""
    rng = np.random.default_rng(seed)

    def missing() -> np.ndarray:
        return rng.random(n) < 0.15

    def strings(values: np.ndarray) -> pa.Array:
        return pa.array(rng.choice(values, n), pa.string(), mask=missing())

    hours = rng.integers(0, 40_000, n).astype("timedelta64[h]")
    return pa.table({
        "row_id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "tenure": pa.array(rng.normal(30, 40, n), pa.float64(), mask=missing()),
        "charges": pa.array(rng.uniform(-10, 200, n), pa.float64(), mask=missing()),
        "autopay": pa.array(rng.random(n) < 0.5, pa.bool_(), mask=missing()),
        "plan": strings(PLANS),
        "region": strings(REGIONS),
        "signup": pa.array((np.datetime64("2020-01-01", "us") + hours).astype("datetime64[us]"),
                           pa.timestamp("us"), mask=missing()),
        "notes": strings(NOTES),
    })


def _write(folder: Path) -> int:
    """FILES Parquet files of generated rows; returns their in-memory (Arrow) size."""
    folder.mkdir(parents=True)
    size = 0
    for i in range(FILES):
        table = _rows(ROWS_PER_FILE, seed=100 + i, first_id=i * ROWS_PER_FILE)
        size += table.nbytes
        pq.write_table(table, folder / f"part-{i:02d}.parquet", row_group_size=50_000)
    return size


def _log_model(model: LoadedModel, tracking_uri: str) -> str:
    """Log ``model`` (a LoadedModel of the XGBoost family) as the register stage does; return
    its ``models:/`` URI (MLflow 3's logged model: no registry version needed)."""
    import mlflow

    from pipelines.families.registry import get_family, write_family_marker
    from pipelines.tracking import log_pipeline_model

    family = get_family("xgboost")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("batch_at_scale")
    example = _rows(5, seed=0, first_id=0).drop_columns(["row_id"]).to_pandas()
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run():
        model_dir = Path(tmp)
        family.save(model.predictor.booster, model_dir)
        write_family_marker(model_dir, family)
        info = log_pipeline_model(model.spec, model_dir, example)
    return str(info.model_uri)


def _in_process(model: LoadedModel, folder: Path) -> dict[str, list[float]]:
    """The in-memory model's own predictions of the first SAMPLE rows of the first file."""
    from pipelines.model.spec import conform_input, predict_frame

    rows = pq.read_table(folder / "part-00.parquet").slice(0, SAMPLE).to_pandas()
    spec = model.spec
    preds = predict_frame(spec, model.predictor,
                          conform_input(rows.drop(columns=["row_id"]), spec, for_pipeline=True))
    return {"row_id": rows["row_id"].tolist(), "prediction": preds["prediction"].tolist(),
            "probability": preds["probability"].tolist()}


def _scored(output: Path) -> dict[str, list[float]]:
    """The batch output's predictions of the sample rows, in ``row_id`` order."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    table = pads.dataset(str(output), format="parquet").to_table(
        columns=["row_id", "prediction", "probability"], filter=pc.field("row_id") < SAMPLE)
    frame = table.to_pandas().sort_values("row_id")
    return {c: frame[c].tolist() for c in ("row_id", "prediction", "probability")}


def main(argv: list[str]) -> int:
    import ray

    from pipelines.config import BatchConfig
    from pipelines.sources.files import read_files
    from pipelines.stages.batch import count_parquet_rows, run_batch_inference
    from tests.unit.model.helpers import make_model

    work = Path(argv[0])
    data, output = work / "rows", work / "predictions"
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    model = make_model("binary")
    model_uri = _log_model(model, tracking_uri)
    size = _write(data)
    rows = FILES * ROWS_PER_FILE
    ray.init(num_cpus=2, object_store_memory=STORE_BYTES, include_dashboard=False,
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.monotonic()
    # No max_object_store_bytes: the object store's own size is the only bound.
    # Read as `raypipe predict` reads a folder of Parquet files (the product's file source):
    # through it, before the check took a CPU fraction, this run hung for good (the paused
    # read task and the actors held the CPUs a whole-CPU check needed); Ray Data's default
    # reader (one task, two blocks larger than the store) did not show it.
    result = run_batch_inference(read_files(str(data), "parquet"), model_uri=model_uri,
                                 tracking_uri=tracking_uri,
                                 cfg=BatchConfig(concurrency=2, id_columns=["row_id"],
                                                 min_rows_per_file=MIN_ROWS_PER_FILE),
                                 output_dir=str(output), rows_in=count_parquet_rows(str(data)))
    seconds = time.monotonic() - start
    ray.shutdown()
    summary = {
        "store_bytes": STORE_BYTES, "data_bytes": size, "rows": rows, "seconds": seconds,
        "driver_peak_rss_before_bytes": rss_before,
        "driver_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rows_in": result.rows_in, "rows_predicted": result.rows_predicted,
        "rows_quarantined": result.rows_quarantined,
        "rows_read_back": count_parquet_rows(str(output)),
        "model_uri": model_uri, "model_version": result.model_version,
        "expected_sample": _in_process(model, data), "scored_sample": _scored(output),
    }
    (work / "result.json").write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
