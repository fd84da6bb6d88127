"""A Ray Data read task's worker process is SIGKILLed during ingest: Ray retries the task
and every row arrives exactly once (the way Ray's own chaos tests kill workers and then
check counts). Prints what it killed and the rows in and out.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import FileSource
from pipelines.stages.ingest import read_source
from tests.procs import ray_workers

pytestmark = pytest.mark.integration

FILES, ROWS_PER_FILE = 24, 40_000


def test_a_killed_read_task_is_retried_and_no_row_is_lost_or_doubled(ray_address: str,
                                                                      tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for f in range(FILES):
        ids = np.arange(f * ROWS_PER_FILE, (f + 1) * ROWS_PER_FILE)
        pd.DataFrame({"id": ids, "x": rng.normal(size=len(ids)),
                      "label": rng.choice(["a", "b", "c"], size=len(ids))}
                     ).to_csv(data / f"part-{f:02d}.csv", index=False)
    killed: list[int] = []
    done = threading.Event()

    def chaos() -> None:  # kill the first read task seen, once
        while not done.is_set() and not killed:
            for pid in ray_workers(b"ray::Read"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(pid)
                break
            time.sleep(0.01)

    watcher = threading.Thread(target=chaos, daemon=True)
    watcher.start()
    t0 = time.time()
    try:
        ds = read_source(FileSource(path=str(data), format="csv"), tmp_path)
        ids = ds.select_columns(["id"]).to_pandas()["id"].to_numpy()
    finally:
        done.set()
        watcher.join(timeout=10)
    total = FILES * ROWS_PER_FILE
    print(f"\nread task kill: killed pid {killed}; {total} rows in {FILES} files, {len(ids)} "
          f"rows read, {len(np.unique(ids))} distinct, in {time.time() - t0:.1f} s")
    assert killed, "no read task lived long enough to be killed"
    assert len(ids) == total and np.array_equal(np.sort(ids), np.arange(total))
