"""Ray's autoscaler adds worker nodes for a sweep the head cannot hold and removes them after.

The cluster (Ray's AutoscalingCluster: fake nodes on this machine) needs its own Ray
connection, so the sweep runs in a subprocess (autoscaling_sweep.py) and reports as JSON.
Marker ``cluster``: ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.cluster.local_cluster import REPO, isolated_env, kill_leftovers

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(660)]


def test_sweep_scales_the_cluster_up_and_back_down() -> None:
    # A short root: Ray's Unix socket paths under it must stay below the 107-byte limit.
    root = Path(tempfile.mkdtemp(prefix="rpas-", dir="/tmp"))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "tests.cluster.autoscaling_sweep", str(root)],
            cwd=REPO, env=isolated_env(root), capture_output=True, text=True, timeout=600,
            check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT ")]
        assert lines, f"no report (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
        report = json.loads(lines[-1].removeprefix("REPORT "))
        assert "error" not in report, f"{report['error']}\n{out.stderr[-5000:]}"
        assert out.returncode == 0
    finally:
        kill_leftovers(root)  # the sweep ends its cluster itself, unless it was killed first
        shutil.rmtree(root, ignore_errors=True)

    # The sweep completed: the pipeline registered its model.
    assert report["model_uri"] == "models:/raypipe-demo@champion"
    # Each trial asked for 3 CPUs, the head has 2: workers were added while the trials ran,
    # and every trial ran on one of them.
    assert report["peak_worker_nodes_in_sweep"] >= 1
    assert report["trial_nodes"], "no trial actor was found"
    assert report["head_node"] not in report["trial_nodes"]
    # Idle workers were removed afterwards: the cluster is back to its head.
    assert report["final_nodes"] == 1
    assert report["scale_down_s"] < 90
