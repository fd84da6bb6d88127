"""The sweep's progress as one line — trials done / total, running, best score so far — for
whoever shows it (the CLI's Rich progress, through the runner's stage callback).

A Tune callback runs in the driver, in the thread that called ``Tuner.fit``. It is pickled with
the experiment (``Tuner.restore`` brings it back), so it holds no reference to the listener:
the sweep sets the listener around ``fit`` (:func:`progress_listener`), and every callback of
that thread reports to it.

Imports Ray Tune: the sweep imports this module when it starts, not the stage package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ray.tune import Callback

__all__ = ["SweepProgress", "progress_line", "progress_listener"]

_LISTENER: ContextVar[Callable[[str], None] | None] = ContextVar("raypipe_sweep_progress",
                                                                 default=None)


@contextmanager
def progress_listener(listener: Callable[[str], None] | None) -> Iterator[None]:
    """Send the progress lines of the sweeps run inside the block to ``listener``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def progress_line(statuses: list[str], finals: list[tuple[float, str]], *, total: int,
                  metric: str, mode: str) -> str:
    """``3/8 trials done · 2 running · best logloss 0.4123 (xgboost)``.

    statuses: every trial's Tune status; finals: ``(score, family)`` of each trial that
    finished with its final report (the score the sweep ranks by).
    """
    done = sum(s in ("TERMINATED", "ERROR") for s in statuses)
    running = statuses.count("RUNNING")
    line = f"{done}/{total} trials done · {running} running"
    failed = statuses.count("ERROR")
    if failed:
        line += f" · {failed} failed"
    scored = [(score, family) for score, family in finals if math.isfinite(score)]
    if scored:
        pick = min if mode == "min" else max
        score, family = pick(scored, key=lambda sf: sf[0])
        line += f" · best {metric} {score:.4f} ({family})"
    return line


class SweepProgress(Callback):
    """Tune callback: a :func:`progress_line` whenever a trial starts, reports or ends."""

    def __init__(self, total: int, metric: str, mode: str) -> None:
        self.total, self.metric, self.mode = total, metric, mode

    def _tell(self, trials: list[Any], ended: Any = None) -> None:
        listener = _LISTENER.get()
        if listener is None:
            return
        # Tune calls on_trial_complete before it marks the trial TERMINATED.
        statuses = ["TERMINATED" if t is ended else t.status for t in trials]
        finals = []
        for t, status in zip(trials, statuses, strict=True):
            result = t.last_result or {}
            if status == "TERMINATED" and result.get("final") and self.metric in result:
                finals.append((float(result[self.metric]), str(result.get("family"))))
        listener(progress_line(statuses, finals, total=self.total, metric=self.metric,
                               mode=self.mode))

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._tell(trials)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        self._tell(trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        self._tell(trials, ended=trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._tell(trials)
