"""The isolated two-node cluster really keeps node-local folders apart, and runs a submitted job.

One ``ray job submit`` of this module's probe (run as ``python -m
tests.cluster.test_isolated_cluster``) whose driver writes into the private dir, then runs a
task pinned to the worker and one pinned to the head: each node sees only its own files there,
its own ``/dev/shm`` and its own unpacked ``working_dir``, and both see the shared repo and
a file the test wrote outside the private dirs. Marker ``cluster``: ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.isolated_cluster import HEAD, WORKER, isolated_two_node_cluster, isolation_unavailable
from tests.cluster.local_cluster import REPO, kill_leftovers

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(240)]

REPORT = "isolation-probe: "  # prefix of the probe's one JSON line in the job's logs
MARKER = "working_dir_marker.txt"


def _look(private: str, shared: list[str], write: str | None) -> dict[str, Any]:
    """This process's view: its node, the private dir's files, /dev/shm markers, shared files."""
    import ray

    p = Path(private)
    if write:
        (p / write).write_text(write)
        Path(f"/dev/shm/raypipe-iso-{write}").write_text(write)
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "private": sorted(os.listdir(p)),
        "shm": sorted(f for f in os.listdir("/dev/shm") if f.startswith("raypipe-iso-")),
        "shared": {s: Path(s).exists() for s in shared},
        "cwd_has_marker": Path(MARKER).exists(),
        "cwd": os.getcwd(),
    }


def probe(private: str, shared: list[str]) -> dict[str, Any]:
    """Driver, then a task on the worker, then a task on the head; each writes and lists."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init()
    nodes = {("head" if "node:__internal_head__" in n["Resources"] else "worker"): n["NodeID"]
             for n in ray.nodes() if n["Alive"]}
    look = ray.remote(num_cpus=0.1)(_look)

    def on(node: str, write: str | None) -> dict[str, Any]:
        strategy = NodeAffinitySchedulingStrategy(nodes[node], soft=False)
        task = look.options(scheduling_strategy=strategy).remote(private, shared, write)
        seen: dict[str, Any] = ray.get(task)
        return seen

    return {"nodes": nodes, "driver": _look(private, shared, "driver"),
            "worker": on("worker", "worker"), "head": on("head", None)}


def test_nodes_see_only_their_own_private_dirs_and_a_job_runs_on_the_head(tmp_path: Path) -> None:
    if reason := isolation_unavailable():
        pytest.skip(reason)
    private = tmp_path / "nodelocal"
    shared_file = tmp_path / "shared.txt"
    shared_file.write_text("both nodes see this")
    shared = [str(REPO / "pyproject.toml"), str(shared_file)]
    app = tmp_path / "app"
    app.mkdir()
    (app / MARKER).write_text("unpacked on each node")
    # A short root: Ray's Unix socket paths under it must stay below the 107-byte limit.
    root = Path(tempfile.mkdtemp(prefix="rpiso-", dir="/tmp"))
    started = time.monotonic()
    try:
        with isolated_two_node_cluster(root, [private]) as cluster:
            print(f"isolated cluster up in {time.monotonic() - started:.1f}s")
            sid = f"iso-{uuid.uuid4().hex[:8]}"
            runtime_env = {"working_dir": str(app), "env_vars": {"PYTHONPATH": str(REPO)}}
            out = cluster.ray_cli(
                "job", "submit", "--address", cluster.dashboard_url, "--submission-id", sid,
                "--runtime-env-json", json.dumps(runtime_env), "--",
                "python", "-m", "tests.cluster.test_isolated_cluster", str(private), *shared, timeout=120)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith(REPORT)]
            assert out.returncode == 0 and lines, f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
            seen = json.loads(lines[-1].removeprefix(REPORT))

            # The driver ran on the head, a task on each node, as asked.
            assert seen["nodes"] == {"head": cluster.node_ids[HEAD], "worker": cluster.node_ids[WORKER]}
            assert seen["driver"]["node_id"] == seen["head"]["node_id"] == cluster.node_ids[HEAD]
            assert seen["worker"]["node_id"] == cluster.node_ids[WORKER]
            # Each node sees only what was written on it, in the private dir and in /dev/shm.
            assert seen["driver"]["private"] == seen["head"]["private"] == ["driver"]
            assert seen["worker"]["private"] == ["worker"]
            assert seen["head"]["shm"] == ["raypipe-iso-driver"]
            assert seen["worker"]["shm"] == ["raypipe-iso-worker"]
            # ...and all of them see the shared paths and their node's own working_dir copy.
            for view in ("driver", "worker", "head"):
                assert all(seen[view]["shared"].values()), seen[view]
                assert seen[view]["cwd_has_marker"], seen[view]
                assert seen[view]["cwd"].startswith(str(cluster.ray_temp_dir)), seen[view]
            # Outside the nodes the private dir is untouched; each node's files are in its backing.
            assert os.listdir(private) == []
            assert cluster.node_path(HEAD, private / "driver").read_text() == "driver"
            assert cluster.node_path(WORKER, private / "worker").read_text() == "worker"
            assert not cluster.node_path(HEAD, private / "worker").exists()
            assert not Path("/dev/shm/raypipe-iso-driver").exists()
    finally:
        kill_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)
        print(f"isolated cluster test, start to teardown: {time.monotonic() - started:.1f}s")


if __name__ == "__main__":  # the job's entrypoint: PRIVATE_DIR SHARED_PATH...
    print(REPORT + json.dumps(probe(sys.argv[1], sys.argv[2:])), flush=True)
