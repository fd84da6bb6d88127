"""``raypipe run`` shows what a running stage reports (the train stage's trials) in its Rich
progress line. The runner is a stand-in that reports as the real one does, without Ray."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import pipelines.runner
from pipelines.cli import app
from pipelines.errors import RaypipeError

LINE = "3/8 trials done · 2 running · best logloss 0.4123 (xgboost)"


class _Stop(RaypipeError):
    """Ends the stand-in run once it has reported."""


def test_run_shows_the_train_stage_s_trial_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_pipeline(cfg: Any, on_stage: Any, **kw: Any) -> Any:
        on_stage("train", "start", "xgboost: 4 trial(s) each, optuna search")
        on_stage("train", "progress", LINE)
        raise _Stop("stopped after the progress report")

    monkeypatch.setattr(pipelines.runner, "run_pipeline", run_pipeline)
    result = CliRunner().invoke(app, ["run"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    # The stage's own line stays, the trials' progress follows it; the stage is not done.
    assert f"xgboost: 4 trial(s) each, optuna search · {LINE}" in result.output
    assert "stopped after the progress report" in result.output


def test_the_runner_s_stage_clock_relays_progress_to_the_callback() -> None:
    events: list[tuple[str, str, str]] = []
    stages = pipelines.runner._Stages(lambda *event: events.append(event))
    report = stages.progress("train")
    assert report is not None
    report(LINE)
    assert events == [("train", "progress", LINE)]
    assert pipelines.runner._Stages(None).progress("train") is None
