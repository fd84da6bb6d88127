"""Submitting the pipeline to a test cluster with ``ray job submit`` and reading what happened."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.cluster.local_cluster import REPO, LocalCluster

CONFIG = "pipelines/configs/demo.yaml"  # the file `raypipe run` and the RayJob manifest use


def submit_command(overrides: list[str], entrypoint: str = "ray_jobs/run_pipeline.py",
                   flags: tuple[str, ...] = ()) -> list[str]:
    """The job's entrypoint: a ray_jobs/ script on the shared config, plus overrides."""
    argv = ["python", entrypoint, CONFIG, *flags]
    for o in overrides:
        argv += ["--set", o]
    return argv


def app_dir(target: Path) -> Path:
    """What the image's /home/ray/app holds (pipelines/, ray_jobs/), from this checkout.

    Uploading the checkout itself would also send whatever untracked bulk lies in it (wheel
    caches, type-checker caches) and can pass Ray's 100 MiB upload limit.
    """
    for package in ("pipelines", "ray_jobs"):
        shutil.copytree(REPO / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def job_report(cluster: LocalCluster, sid: str) -> dict[str, Any]:
    """Status, logs, Ray job id, alive nodes and actors of submission ``sid``."""
    got = subprocess.run([sys.executable, "-m", "tests.cluster.job_report", cluster.dashboard_url,
                          sid], env=cluster.env, cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert got.returncode == 0, f"no report of job {sid}:\n{got.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(got.stdout.strip().splitlines()[-1])
    return report


def summary_line(logs: str) -> dict[str, Any] | None:
    """The pipeline job's last output line: its run summary as JSON."""
    for line in reversed(logs.splitlines()):
        if line.startswith("{") and '"model_uri"' in line:
            found: dict[str, Any] = json.loads(line)
            return found
    return None


def submit(cluster: LocalCluster, working_dir: Path, overrides: list[str],
           env_vars: dict[str, str], flags: tuple[str, ...] = (), *, wait: bool = True,
           sid: str | None = None, timeout: float = 360) -> dict[str, Any]:
    """Submit, wait, and return the job's status, logs, Ray job id and summary line.

    ``wait=False`` returns at once with only the submission id (``--no-wait``)."""
    sid = sid or f"raypipe-{uuid.uuid4().hex[:8]}"
    try:
        out = cluster.ray_cli(
            "job", "submit", "--address", cluster.dashboard_url, "--submission-id", sid,
            "--working-dir", str(working_dir), "--runtime-env-json",
            json.dumps({"env_vars": env_vars}), *(() if wait else ("--no-wait",)), "--",
            *submit_command(overrides, flags=flags), timeout=timeout)
    except subprocess.TimeoutExpired:
        # Say where it hung: the job's own logs, then stop it so the cluster is free again.
        logs = job_report(cluster, sid)["logs"]
        cluster.ray_cli("job", "stop", "--address", cluster.dashboard_url, sid, timeout=60)
        raise AssertionError(f"job {sid} still running after {timeout:.0f} s:\n{logs[-6000:]}") from None
    if not wait:
        assert out.returncode == 0, out.stderr[-3000:]
        return {"submission_id": sid}
    job = job_report(cluster, sid)
    summary = summary_line(job["logs"])
    if summary:  # shown with a failure: where the time went
        print(f"{sid}: stages {summary.get('stage_seconds')}")
    return {**job, "summary": summary, "submission_id": sid,
            "submit_output": out.stdout[-3000:] + out.stderr[-3000:]}


def _nodes_of(actors: list[dict[str, Any]], class_name: str) -> set[str]:
    # The state API names a class defined in a function by its qualified name at times
    # ("wrap_function.<locals>.ImplicitFunc"), by its own name at others.
    return {a["node_id"] for a in actors
            if a.get("node_id") and (a["class_name"] == class_name
                                     or a["class_name"].endswith(f".{class_name}"))}


def assert_actors_on_every_node(cluster: LocalCluster, job: dict[str, Any], class_name: str) -> None:
    """The job's CLASS_NAME actors ran on every alive node.

    The job's report answers first; failing that, the state API is asked a few more times: a
    CI run once saw none of a finished job's trial actors there although the job had
    succeeded. The failure then shows every actor the job had.
    """
    expected = set(job["alive_nodes"])
    actors = job["actors"]
    seen = _nodes_of(actors, class_name)
    if seen == expected:
        return
    job_id = job["job_id"]
    for _attempt in range(5):
        actors = cluster.state("actors", f"job_id={job_id}")
        seen = _nodes_of(actors, class_name)
        if seen == expected:
            return
        time.sleep(2)
    summary = sorted((a["class_name"], a["state"], a.get("node_id")) for a in actors)
    raise AssertionError(f"{class_name} actors ran on {seen}, not on every node {expected}; "
                         f"the job's actors: {summary}")
