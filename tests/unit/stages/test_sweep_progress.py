"""The train stage's progress line: trials done / total, running, best score so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.stages.sweep_progress import SweepProgress, progress_line, progress_listener


def test_the_line_counts_trials_and_names_the_best_so_far() -> None:
    line = progress_line(["TERMINATED", "RUNNING", "RUNNING", "PENDING", "TERMINATED"],
                         [(0.41, "xgboost"), (0.39, "linear")], total=8, metric="logloss",
                         mode="min")
    assert line == "2/8 trials done · 2 running · best logloss 0.3900 (linear)"
    assert progress_line(["ERROR", "TERMINATED"], [(0.7, "xgboost"), (0.9, "mlp")], total=2,
                         metric="auc", mode="max") == (
        "2/2 trials done · 0 running · 1 failed · best auc 0.9000 (mlp)")
    assert progress_line(["RUNNING"], [], total=4, metric="rmse", mode="min") == (
        "0/4 trials done · 1 running")


@dataclass
class _Trial:
    status: str
    last_result: dict[str, Any] = field(default_factory=dict)


def test_the_callback_tells_the_listener_of_the_sweep_s_thread() -> None:
    lines: list[str] = []
    done = _Trial("RUNNING", {"logloss": 0.3, "final": 1, "family": "xgboost"})
    stopped = _Trial("TERMINATED", {"logloss": 0.1, "round": 20})  # ASHA: no final report
    trials = [done, stopped, _Trial("RUNNING", {"logloss": 0.5, "round": 10})]
    callback = SweepProgress(total=6, metric="logloss", mode="min")
    callback.on_trial_start(iteration=1, trials=trials, trial=trials[2])  # nobody listens
    with progress_listener(lines.append):
        callback.on_trial_result(iteration=2, trials=trials, trial=trials[2], result={})
        # Tune calls on_trial_complete while the trial still says RUNNING.
        callback.on_trial_complete(iteration=3, trials=trials, trial=done)
    callback.on_trial_error(iteration=4, trials=trials, trial=trials[2])
    assert lines == ["1/6 trials done · 2 running",
                     "2/6 trials done · 1 running · best logloss 0.3000 (xgboost)"]
