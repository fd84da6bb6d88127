"""Evaluate predictions three times the size of a small object store, in a Ray of its own.

Run by ``test_evaluate_stream.py::test_evaluation_streams_three_times_the_object_store`` as
``python -m tests.integration.evaluate_at_scale WORK_DIR``: it starts Ray with an object store
of ``STORE_BYTES`` (the shared test instance has a fixed, larger one), writes generated
predictions as Parquet, evaluates them with :func:`evaluate_predictions`, computes the
expected metrics independently in pandas, one file at a time, and writes both with the
figures to ``WORK_DIR/result.json``.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

STORE_BYTES = 80 * 2**20
FILES = 16
ROWS_PER_FILE = 500_000  # 8M rows of 4 evaluated columns: about 3x STORE_BYTES in memory


def _write(folder: Path) -> int:
    """Binary predictions, scores on a grid of 10,001 values (so the exact ROC AUC is a sum
    over a small table), a slice column; returns the in-memory size of the columns."""
    folder.mkdir(parents=True)
    size = 0
    for i in range(FILES):
        rng = np.random.default_rng(i)
        p = np.round(rng.random(ROWS_PER_FILE), 4)
        frame = pd.DataFrame({
            "y": (rng.random(ROWS_PER_FILE) < p).astype(float),
            "prediction": (p >= 0.5).astype(np.int64),
            "probability": p,
            "plan": pd.array(rng.choice(["basic", "pro", "team", "max"], ROWS_PER_FILE),
                             dtype="string[pyarrow]"),
        })
        size += int(frame.memory_usage(deep=True).sum())
        frame.to_parquet(folder / f"part-{i:02d}.parquet", row_group_size=100_000)
    return size


def _expected(folder: Path) -> dict[str, float]:
    """Accuracy, log loss and ROC AUC from per-file partial results (pandas and sklearn)."""
    from sklearn.metrics import roc_auc_score

    hits = rows = 0
    loss = 0.0
    table = []
    for path in sorted(folder.glob("*.parquet")):
        f = pd.read_parquet(path)
        hits += int((f["y"].astype(int) == f["prediction"]).sum())
        rows += len(f)
        p_true = np.where(f["y"] == 1, f["probability"], 1 - f["probability"])
        loss += math.fsum(-np.log(np.clip(p_true, 1e-15, 1.0)))
        table.append(f.groupby(["probability", "y"]).size())
    counts = pd.concat(table).groupby(level=[0, 1]).sum().reset_index(name="n")
    auc = roc_auc_score(counts["y"], counts["probability"], sample_weight=counts["n"])
    return {"accuracy": hits / rows, "log_loss": loss / rows, "roc_auc": float(auc),
            "rows": float(rows)}


def main(argv: list[str]) -> int:
    import ray

    from pipelines.stages.evaluate import evaluate_predictions

    work = Path(argv[0])
    data = work / "predictions"
    size = _write(data)
    ray.init(num_cpus=2, object_store_memory=STORE_BYTES, include_dashboard=False,
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.monotonic()
    evaluation = evaluate_predictions(ray.data.read_parquet(str(data)), target="y",
                                      task="binary", classes=[0, 1], slices=["plan"],
                                      plot_dir=work / "plots")
    seconds = time.monotonic() - start
    ray.shutdown()
    result = {
        "store_bytes": STORE_BYTES, "data_bytes": size, "seconds": seconds,
        "driver_peak_rss_before_bytes": rss_before,
        "driver_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "metrics": evaluation.metrics, "confusion": evaluation.confusion,
        "slices": evaluation.slices, "plots": [p.uri for p in evaluation.plots],
        "expected": _expected(data),
    }
    (work / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
