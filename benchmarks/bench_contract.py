"""Validation + data profile, side by side in one run: raypipe on Ray Data vs plain pandas.

    python benchmarks/bench_contract.py [--rows 1000000]

Both read the same Parquet file (the demo data set, row groups of 100,000 rows) and check it
against the bundled demo contract with the same per-batch kernel (``check_batch``), then profile
it. The plain side: ``pd.read_parquet`` → ``check_batch`` on the whole frame → split into passed /
quarantined → a pandas profile of every column (nulls, ``nunique``, min/max/mean/std, 7
quantiles, top-10 ``value_counts``), all exact, in one process. raypipe: ``validate`` (three
materialisations, quarantine reasons counted) + ``profile_dataset`` (streaming sketches) on a fresh
local Ray with 2 CPUs; Ray's start-up is reported apart. Each side runs in its own process;
peak memory is that driver process's ``ru_maxrss`` (Ray workers are not counted: the point is
that the driver stays bounded).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = "churned"


def _schema() -> Any:
    from pipelines.config import load_config

    return load_config(None).schema_


def _peak_mib() -> float:
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would report the parent's peak
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def plain(path: str) -> dict[str, Any]:
    import pandas as pd

    from pipelines.profile import QUANTILES
    from pipelines.stages.validate import REASON_COLUMN, check_batch

    t0 = time.perf_counter()
    df = pd.read_parquet(path)
    checked = check_batch(df, _schema(), TARGET)
    bad = checked[REASON_COLUMN].notna()
    passed, quarantined = checked[~bad], checked[bad]
    profile: dict[str, Any] = {}
    for name in df.columns:
        s = df[name]
        col: dict[str, Any] = {"nulls": int(s.isna().sum()), "distinct": int(s.nunique())}
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            col |= {"min": s.min(), "max": s.max(), "mean": s.mean(), "std": s.std(),
                    "quantiles": s.quantile(QUANTILES).tolist()}
        else:
            col["top"] = s.value_counts().head(10).to_dict()
        profile[name] = col
    wall = time.perf_counter() - t0
    return {"wall": wall, "rows": len(df), "passed": len(passed), "quarantined": len(quarantined),
            "peak_mib": _peak_mib()}


def raypipe(path: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    start = time.perf_counter() - t0

    from pipelines.profile import profile_dataset
    from pipelines.stages.validate import validate

    t1 = time.perf_counter()
    ds = ray.data.read_parquet(path)
    result = validate(ds, _schema(), TARGET, enforce=False)
    t2 = time.perf_counter()
    columns = [c for c in ds.columns() or [] if not c.startswith("_quarantine")]
    profile = profile_dataset(result.checked or ds, columns=columns)
    wall = time.perf_counter() - t1
    ray.shutdown()
    return {"wall": wall, "ray_start": start, "validate": t2 - t1, "profile": wall - (t2 - t1),
            "rows": result.rows_in, "passed": result.rows_valid,
            "quarantined": result.rows_quarantined, "profiled": profile.rows,
            "peak_mib": _peak_mib()}


def _input(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.demo import generate_demo_frame

    table = pa.Table.from_pandas(generate_demo_frame(rows, 7), preserve_index=False)
    pq.write_table(table, path, row_group_size=100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--side", choices=["plain", "raypipe"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps((plain if args.side == "plain" else raypipe)(args.input)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.parquet"
        _input(path, args.rows)
        results = {}
        for side in ("plain", "raypipe"):
            out = subprocess.run([sys.executable, __file__, "--side", side, "--input", str(path)],
                                 capture_output=True, text=True, check=True)
            results[side] = json.loads(out.stdout.strip().splitlines()[-1])
    p, r = results["plain"], results["raypipe"]
    assert (p["rows"], p["passed"], p["quarantined"]) == (r["rows"], r["passed"], r["quarantined"])
    print(f"machine: {platform.machine()}, {platform.python_version()}, rows {args.rows}")
    for name, res in results.items():
        print(f"{name:8s} wall {res['wall']:7.2f} s  {res['rows'] / res['wall']:>10,.0f} rows/s  "
              f"driver peak {res['peak_mib']:6.0f} MiB"
              + (f"  (ray start {res['ray_start']:.1f} s; validate {res['validate']:.1f} s, "
                 f"profile {res['profile']:.1f} s)" if "ray_start" in res else ""))
    print(f"ratio raypipe/plain wall: {r['wall'] / p['wall']:.2f}x; "
          f"passed {p['passed']}, quarantined {p['quarantined']}")


if __name__ == "__main__":
    main()
