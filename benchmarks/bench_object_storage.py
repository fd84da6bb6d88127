"""The demo pipeline with its state on local disk vs in an S3-compatible store, same machine.

    python benchmarks/bench_object_storage.py [--rows 1000000]

Each size runs ``raypipe run`` twice in fresh folders, in one invocation: once with
``runtime.work_dir`` a local folder, once with it a prefix in a bucket of moto's S3 server on
loopback (the one the tests use). Tracking is the same local SQLite store for both, so the
difference is the pipeline's own state: demo data, stage cache, quarantine, plots, Tune
results, predictions. The ratio S3 / local is the cost of object storage's round trips (on
loopback: protocol and copy overhead, no network latency; a real store adds that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_pipeline import raypipe_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.s3 import s3_server  # the repository root, after the path above


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    args = parser.parse_args()
    results = []
    with s3_server() as s3:
        bucket = s3.bucket("raypipe-bench")
        for rows in args.rows:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                tracking = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
                (work / "local").mkdir()
                (work / "s3").mkdir()
                local = raypipe_run(rows, work / "local", env_extra=tracking)
                remote = raypipe_run(
                    rows, work / "s3",
                    overrides=(f"runtime.work_dir={bucket}/{uuid.uuid4().hex[:8]}",),
                    env_extra={**tracking, **s3.env})
                local_files = sum(1 for p in (work / "s3").rglob("*") if p.is_file())
            results.append({"rows": rows, "local_disk": local, "s3_server": remote,
                            "files_left_in_the_s3_run_folder": local_files,
                            "ratio_s3_over_local": float(remote["wall_s"])  # type: ignore[arg-type]
                            / float(local["wall_s"])})  # type: ignore[arg-type]
    print(json.dumps({"machine": f"{platform.node()} {platform.processor() or platform.machine()}"
                                 f", {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
