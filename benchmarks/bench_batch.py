"""Batch inference, side by side in one run: raypipe's Ray Data actor pool vs a plain
single-process loop calling the same model's predict on pandas chunks.

    python benchmarks/bench_batch.py [--rows 5000000] [--tracking-uri URI --model URI]
                                     [--concurrency 2] [--batch-size 65536] [--cpus-per-actor 0.25]

Both read the same Parquet input (row groups of 100,000 rows), load the same registered model
once, and write one Parquet row per input row (an id column + predictions + model version).
The plain loop: ``pyarrow`` batches of ``--chunk`` rows → pandas → ``conform_input`` →
``pyfunc.predict`` → ``ParquetWriter``. raypipe: ``run_batch_inference`` (the code behind
``raypipe predict``) on a fresh local Ray instance with 2 CPUs; Ray's start-up is reported
apart. Library imports (MLflow, Ray, pandas) happen before either clock starts; loading the
model from the registry is inside both. Peak memory is the largest sum of PSS (proportional set
size, so the shared object store is not counted twice) over each run's whole process tree,
sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- memory sampling


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree_pss(root: int) -> int:
    tree = _children()
    stack, total = [root], 0
    while stack:
        pid = stack.pop()
        stack += tree.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def _run_measured(cmd: list[str]) -> tuple[dict[str, Any], int]:
    """Run ``cmd``; return its JSON stdout and the peak PSS of its process tree."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_pss(proc.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[2]} failed with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak


# --------------------------------------------------------------------------- the two runs


def plain(args: argparse.Namespace) -> None:
    import mlflow
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.model.spec import conform_input

    t0 = time.perf_counter()
    mlflow.set_tracking_uri(args.tracking_uri)
    model = mlflow.pyfunc.load_model(args.model)
    spec = model.unwrap_python_model().spec
    columns = list(spec.pipeline.input_schema)
    writer = None
    rows = 0
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for batch in pq.ParquetFile(args.input).iter_batches(batch_size=args.chunk):
        frame = batch.to_pandas()
        preds = model.predict(conform_input(frame[columns], spec))
        preds.insert(0, "row_id", frame["row_id"].to_numpy())
        preds["model_version"] = args.version
        table = pa.Table.from_pandas(preds, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(out / "part-0.parquet", table.schema)
        writer.write_table(table)
        rows += len(preds)
    if writer is not None:
        writer.close()
    print(json.dumps({"rows": rows, "wall_s": time.perf_counter() - t0}))


def raypipe(args: argparse.Namespace) -> None:
    import mlflow  # noqa: F401  imported before the clock, as in plain()
    import ray

    from pipelines.config import BatchConfig
    from pipelines.stages.batch import count_parquet_rows, run_batch_inference
    from pipelines.stages.ingest import read_files

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter()
    cfg = BatchConfig(batch_size=args.batch_size, concurrency=args.concurrency,
                      num_cpus_per_actor=args.cpus_per_actor, id_columns=["row_id"])
    # As `raypipe predict` does for Parquet input: rows counted from the footers.
    result = run_batch_inference(read_files(args.input, "parquet"), model_uri=args.model,
                                 tracking_uri=args.tracking_uri, cfg=cfg, output_dir=args.output,
                                 rows_in=count_parquet_rows(args.input))
    wall = time.perf_counter() - started
    ray.shutdown()
    print(json.dumps({"rows": result.rows_predicted, "quarantined": result.rows_quarantined,
                      "wall_s": wall, "ray_start_s": started - t0}))


# --------------------------------------------------------------------------- driver


def _input(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.demo import generate_demo_frame

    block = generate_demo_frame(500_000, 11).drop(columns=["churned"]).head(500_000)
    writer = None
    for start in range(0, rows, len(block)):
        n = min(len(block), rows - start)
        part = block.head(n).assign(row_id=np.arange(start, start + n))
        table = pa.Table.from_pandas(part, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=100_000)
    assert writer is not None
    writer.close()


def _train(work: Path) -> tuple[str, str]:
    import ray

    from pipelines.config import load_config
    from pipelines.runner import run_pipeline

    cfg = load_config(None, ["source.rows=20000", f"runtime.work_dir={work}"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_pipeline(cfg)
    finally:
        ray.shutdown()
    return cfg.tracking_uri, summary.model_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--model")
    parser.add_argument("--chunk", type=int, default=100_000, help="plain loop: rows per chunk")
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--cpus-per-actor", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.model:
            args.tracking_uri, args.model = _train(work / "train")
        import mlflow

        from pipelines.model.engine import resolve_model

        mlflow.set_tracking_uri(args.tracking_uri)
        ref = resolve_model(args.model)
        data = work / "input.parquet"
        t0 = time.perf_counter()
        _input(data, args.rows)
        gen_s = time.perf_counter() - t0
        common = ["--model", ref.uri, "--tracking-uri", args.tracking_uri, "--input", str(data),
                  "--version", ref.version]
        base, base_peak = _run_measured([sys.executable, __file__, "_plain", *common, "--output",
                                         str(work / "plain"), "--chunk", str(args.chunk)])
        ours, ours_peak = _run_measured([sys.executable, __file__, "_raypipe", *common,
                                         "--output", str(work / "ray"),
                                         "--batch-size", str(args.batch_size),
                                         "--concurrency", str(args.concurrency),
                                         "--cpus-per-actor", str(args.cpus_per_actor)])
        assert base["rows"] == ours["rows"] == args.rows, (base, ours)
        input_mb = data.stat().st_size / 2**20
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rows": args.rows, "input_parquet_mb": round(input_mb, 1), "generate_s": gen_s,
        "plain": {**base, "rows_per_s": base["rows"] / base["wall_s"],
                  "peak_pss_mb": base_peak / 2**20, "chunk": args.chunk},
        "raypipe": {**ours, "rows_per_s": ours["rows"] / ours["wall_s"],
                    "peak_pss_mb": ours_peak / 2**20, "batch_size": args.batch_size,
                    "concurrency": args.concurrency, "cpus_per_actor": args.cpus_per_actor},
        "ratio_raypipe_over_plain_rows_per_s": (ours["rows"] / ours["wall_s"])
        / (base["rows"] / base["wall_s"]),
    }
    print(json.dumps(report, indent=2))


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role")
    parser.add_argument("--model")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--input")
    parser.add_argument("--output")
    parser.add_argument("--version")
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--cpus-per-actor", type=float, default=0.25)
    args = parser.parse_args(argv)
    {"_plain": plain, "_raypipe": raypipe}[args.role](args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        _child(sys.argv[1:])
    else:
        main()
