"""Stage cache: first run vs an unchanged re-run vs a re-run with one hyperparameter changed.

    python benchmarks/bench_cache.py [--rows 50000]

All three runs go through ``raypipe run`` in one fresh work dir, one after the other, so they
share this machine's state; the ratios (re-run / first run) are what the cache buys. The
``--no-cache`` run of the same config is the baseline cost of a run that writes its stage
outputs but reuses none.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(work: Path, rows: int, *extra: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "pipelines", "run", "--rows", str(rows), "--set",
           f"runtime.work_dir={work}", *extra]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    reused = re.search(r"reused\s+(.+?)\s*│", done.stderr)
    return wall, reused.group(1) if reused else "?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first, _ = _run(work, args.rows)
        again, reused_again = _run(work, args.rows)
        changed, reused_changed = _run(work, args.rows,
                                       "--set", "train.xgboost.num_boost_round=201")
        forced, _ = _run(work, args.rows, "--no-cache")
    print(json.dumps({
        "machine": f"{platform.node()} {os.cpu_count()} CPUs", "rows": args.rows,
        "first_run_s": round(first, 1), "no_cache_run_s": round(forced, 1),
        "unchanged_rerun_s": round(again, 1), "unchanged_ratio": round(again / first, 3),
        "unchanged_reused": reused_again,
        "one_hyperparameter_changed_s": round(changed, 1),
        "changed_ratio": round(changed / first, 3), "changed_reused": reused_changed,
        "load_avg": os.getloadavg(),
    }, indent=2))


if __name__ == "__main__":
    main()
