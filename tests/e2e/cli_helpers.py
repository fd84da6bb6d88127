"""Run the ``raypipe`` command as a user runs it: in a subprocess, with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RAYPIPE = [sys.executable, "-m", "pipelines"]


def cli_env() -> dict[str, str]:
    """The test's environment less ``MLFLOW_TRACKING_URI``: each command must find its store
    from its own flags and config, as a user's would."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "COLUMNS": "200"}


def raypipe(*args: str, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RAYPIPE, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=cli_env())
