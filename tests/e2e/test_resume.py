"""Kill the driver in the middle of a sweep; `raypipe run --resume` finishes it.

The resumed run must reuse the stages that finished before the kill, keep the finished
trials, and end with the same model an uninterrupted run of the same config produces.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.e2e

ARGS = [
    "--rows", "3000",
    "--set", "train.num_samples=5", "--set", "train.max_concurrent_trials=1",
    "--set", "train.xgboost.num_boost_round=150", "--set", "train.xgboost.early_stopping_rounds=150",
    "--set", "evaluate.plots=false",
    # FIFO: ASHA's stopping decisions depend on the order reports arrive in, so two runs
    # could legitimately pick different models; this test compares runs exactly.
    "--set", "train.scheduler=fifo",
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def _finished_trials(results: Path) -> dict[str, float]:
    """Trial folder -> mtime of its checkpoint, for trials that checkpointed (finished)."""
    out = {}
    for ckpt in results.glob("*/*/checkpoint_*"):
        out[ckpt.parent.name] = ckpt.stat().st_mtime
    return out


def _trial_index(folder: str) -> str:
    """The per-sweep trial counter in a Tune trial folder name (``..._1a2b3_00004_4_...``)."""
    found = re.search(r"_[0-9a-f]{5}_(\d{5})_", folder)
    assert found is not None, folder
    return found.group(1)


def _stage_manifests(work: Path) -> dict[str, float]:
    """Finished stage -> mtime of its cache manifest."""
    return {p.parent.parent.name: p.stat().st_mtime
            for p in work.glob("cache/*/*/*/_raypipe_stage.json")}


def _predictions(work: Path) -> pd.DataFrame:
    (folder,) = work.glob("cache/*/batch/*/test_predictions")
    frame = pd.read_parquet(folder).drop(columns=["model_version"])  # a per-run model id
    return frame.sort_values("customer_id").reset_index(drop=True)


def _stage_rows(work: Path) -> dict[str, int]:
    """Rows of every Parquet output of every finished stage: ``stage/output`` -> rows."""
    import pyarrow.parquet as pq

    out = {}
    for manifest in work.glob("cache/*/*/*/_raypipe_stage.json"):
        for folder in sorted(p for p in manifest.parent.iterdir() if p.is_dir()):
            files = list(folder.rglob("*.parquet"))
            if files:
                out[f"{manifest.parent.parent.name}/{folder.name}"] = sum(
                    pq.ParquetFile(f).metadata.num_rows for f in files)
    return out


def _rows_of(work: Path, stage: str, output: str) -> pd.DataFrame:
    (folder,) = work.glob(f"cache/*/{stage}/*/{output}")
    return pd.read_parquet(folder)


def _start(work: Path) -> subprocess.Popen[bytes]:
    """``raypipe run`` of ARGS in WORK, its stderr kept in WORK's sibling ``.stderr`` file."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work.with_suffix(".stderr"), "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "pipelines", "run", *ARGS, "--set",
                                 f"runtime.work_dir={work}"], stdout=subprocess.DEVNULL,
                                stderr=err, env=_env())


@pytest.fixture
def uninterrupted(ray_address: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The reference run of the same config, never interrupted, in ``uninterrupted/``.

    It runs beside the killed and resumed runs rather than after them (its own folder and
    store, the shared Ray): half a minute less of the suite, and the kill and the resume must
    not disturb another job's run either.
    """
    proc = _start(tmp_path / "uninterrupted")
    yield proc
    if proc.poll() is None:  # the test failed before it waited
        proc.kill()
        proc.wait()


def test_killed_sweep_resumes_without_redoing_finished_trials(
        uninterrupted: subprocess.Popen[bytes], tmp_path: Path) -> None:
    reference = tmp_path / "uninterrupted"
    cmd = [sys.executable, "-m", "pipelines", "run", *ARGS, "--set",
           f"runtime.work_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(), start_new_session=True)
    results = tmp_path / "ray_results"
    deadline = time.time() + 300
    while time.time() < deadline and len(_finished_trials(results)) < 2:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.5)
    before = _finished_trials(results)
    assert len(before) >= 2
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its process group, mid-sweep
    proc.wait(timeout=30)
    time.sleep(2)  # let Ray notice the driver is gone and reap its trial actors
    stages_before = _stage_manifests(tmp_path)
    assert set(stages_before) == {"validate", "split", "features"}  # killed inside "train"

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=_env(),
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "raypipe run finished" in resumed.stderr
    stages_after = _stage_manifests(tmp_path)
    assert {s: stages_after[s] for s in stages_before} == stages_before  # not redone
    assert {"train", "register", "batch", "evaluate"} <= set(stages_after)
    after = _finished_trials(results)
    assert len(list(results.iterdir())) == 1  # the same experiment folder, continued
    # Every trial finished once the sweep resumed (a trial cut off by the kill starts again
    # in a new folder, so count trial ids rather than folders). A trial id is Tune's 5-hex
    # sweep prefix then a 5-digit counter; the prefix alone can be all digits, so match both.
    ids = {_trial_index(name) for name in after}
    assert len(ids) == 5
    kept = [t for t, mtime in before.items() if after.get(t) == mtime]
    assert kept, "finished trials were run again instead of being kept"

    # The same config run without interruption ends with the same predictions.
    assert uninterrupted.wait(timeout=600) == 0, reference.with_suffix(".stderr").read_text()[-3000:]
    pd.testing.assert_frame_equal(_predictions(tmp_path), _predictions(reference))

    # No row lost or duplicated in any stage output: every output holds the rows the
    # uninterrupted run's does, and the rows add up from stage to stage.
    rows = _stage_rows(tmp_path)
    print(f"\ndriver kill + --resume: rows per stage output {rows}")
    assert rows == _stage_rows(reference)
    assert rows["validate/valid"] + rows.get("validate/quarantine", 0) == 3000
    assert rows["split/train"] + rows["split/valid"] + rows["split/test"] == rows["validate/valid"]
    assert rows["batch/test_predictions"] == rows["split/test"]
    for output in ("train", "valid", "test"):
        resumed, whole = (_rows_of(w, "split", output) for w in (tmp_path, reference))
        key = sorted(resumed.columns)
        pd.testing.assert_frame_equal(
            resumed[key].sort_values(key).reset_index(drop=True),
            whole[key].sort_values(key).reset_index(drop=True))
