"""Run a test module in a subprocess that starts a Ray of its own, and read what it wrote.

The scale tests need a small object store; the shared test instance's is fixed and larger, and
one process cannot hold two Ray instances.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_with_own_ray(module: str, work: Path, timeout: int) -> dict[str, Any]:
    """``python -m module work`` from the repository root, outside the shared Ray; the
    ``result.json`` it writes in ``work``. Fails the test with the module's stderr."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", module, str(work)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads((work / "result.json").read_text())
    return result
