"""A Ray Train worker process is SIGKILLed in the middle of a data-parallel fit: the trial's
FailureConfig restarts the worker group and the sweep still ends with a valid model.

Rank 0 checkpoints every ``checkpoint_every`` rounds (XGBoost: the booster) or epochs (MLP:
weights, optimiser and early-stopping state), so the restarted group continues from the
last checkpoint rather than from the start. Prints what it killed and saw.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import TrainConfig
from tests.integration.train_helpers import sweep, valid_logloss
from tests.procs import ray_workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # runs whole pipelines or fault-injected fits


def _checkpointed(storage: Path) -> bool:
    # Two folders: the older one is surely registered (a folder appears while it uploads).
    return sum(p.is_dir() for p in storage.rglob("checkpoint_*")) >= 2


# Long enough to be killed mid-fit; early stopping may not end it first.
FAMILIES = {
    "xgboost": {"num_boost_round": 1000, "early_stopping_rounds": 1000, "checkpoint_every": 20},
    "mlp": {"max_epochs": 150, "patience": 150, "batch_size": 64, "checkpoint_every": 20},
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_killed_train_worker_is_restarted_and_the_fit_completes(splits: tuple[Any, Any],
                                                                  tmp_path: Path,
                                                                  family: str) -> None:
    cfg = TrainConfig.model_validate({
        "families": [family], "num_samples": 1, "num_workers": 2, "cpus_per_worker": 0.5,
        "max_failures": 2, "refit": False, family: FAMILIES[family],
        # The MLP's search space would draw a learning rate; this one is known to converge.
        "mlp": {**FAMILIES["mlp"], "search_space": {}, "params": {"lr": 0.003}},
    })
    before = ray_workers(b"ray::RayTrainWorker")  # other test runs on this machine may have their own
    seen: set[int] = set()
    killed: list[int] = []
    done = threading.Event()

    def chaos() -> None:
        first_seen: dict[int, float] = {}
        while not done.is_set():
            now = time.time()
            for pid in ray_workers(b"ray::RayTrainWorker") - before:
                first_seen.setdefault(pid, now)
                seen.add(pid)
                # Once the group has checkpointed (Ray Train persists checkpoint_* folders
                # under the storage path), so the restart has something to resume from.
                if not killed and now - first_seen[pid] > 1 and _checkpointed(tmp_path):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.1)

    watcher = threading.Thread(target=chaos, daemon=True)
    watcher.start()
    t0 = time.time()
    try:
        result = sweep(splits, tmp_path, cfg, name="chaos")
    finally:
        done.set()
        watcher.join(timeout=10)
    loss = valid_logloss(splits, result.model_dir)
    resumed = result.trials[0]["resumed_from_round"]
    print(f"\n{family} train worker kill: killed pid {killed}, {len(seen)} worker processes seen "
          f"(2 per group), resumed from round {resumed}, fit completed in "
          f"{time.time() - t0:.1f} s, valid logloss {loss:.3f}")
    assert killed, "no Train worker lived long enough to be killed mid-fit"
    assert len(seen) >= 3  # a new worker replaced the killed one
    assert result.parallelism == "data_parallel" and loss < 0.5
    assert resumed > 0 and resumed % 20 == 0  # from a checkpoint, not from the start
