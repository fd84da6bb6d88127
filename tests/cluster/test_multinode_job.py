"""`ray job submit` of the pipeline to a real two-node Ray cluster on this machine.

A head and a second node (``ray start --address``: its own raylet, 2 CPUs each) are started on
free ports, the pipeline is submitted with ``--working-dir`` and the bundled config, and the
registered model, the predictions and where the work ran are checked. Storage is a local
folder that both nodes see, declared shared through ``RAYPIPE_SHARED_DIRS``; without that
declaration the run is refused, naming the fields. Marker ``cluster``: ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.local_cluster import REPO, LocalCluster, kill_leftovers, local_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(420)]

CONFIG = "pipelines/configs/demo.yaml"  # the file `raypipe run` and the RayJob manifest use
SMALL = ["source.rows=2000"]            # scale only: the rest is the config's
NODE_CPUS = 2                           # per node; a trial or Train worker below takes all of them


def submit_command(overrides: list[str]) -> list[str]:
    """The job's entrypoint: the pipeline entrypoint on the shared config, plus overrides."""
    argv = ["python", "ray_jobs/run_pipeline.py", CONFIG]
    for o in overrides:
        argv += ["--set", o]
    return argv


@pytest.fixture(scope="module")
def working_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the image's /home/ray/app holds (pipelines/, ray_jobs/), from this checkout.

    Uploading the checkout itself would also send whatever untracked bulk lies in it (wheel
    caches, type-checker caches) and can pass Ray's 100 MiB upload limit.
    """
    app = tmp_path_factory.mktemp("app")
    for package in ("pipelines", "ray_jobs"):
        shutil.copytree(REPO / package, app / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return app


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # A short root: Ray's Unix socket paths under it must stay below the 107-byte limit.
    root = Path(tempfile.mkdtemp(prefix="rp2n-", dir="/tmp"))
    try:
        with local_cluster(root, cpus_per_node=[NODE_CPUS, NODE_CPUS]) as c:
            yield c
    finally:
        kill_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)


def submit(cluster: LocalCluster, working_dir: Path, overrides: list[str],
           env_vars: dict[str, str]) -> dict[str, Any]:
    """Submit, wait, and return the job's status, logs, Ray job id and summary line."""
    sid = f"raypipe-{uuid.uuid4().hex[:8]}"
    out = cluster.ray_cli(
        "job", "submit", "--address", cluster.dashboard_url, "--submission-id", sid,
        "--working-dir", str(working_dir), "--runtime-env-json", json.dumps({"env_vars": env_vars}),
        "--", *submit_command(overrides), timeout=360)
    got = subprocess.run([sys.executable, "-m", "tests.cluster.job_report", cluster.dashboard_url,
                          sid], env=cluster.env, cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert got.returncode == 0, (f"no report of job {sid}:\n{got.stderr[-3000:]}\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    job = json.loads(got.stdout.strip().splitlines()[-1])
    logs = job["logs"]
    summary = None
    for line in reversed(logs.splitlines()):
        if line.startswith("{") and '"model_uri"' in line:
            summary = json.loads(line)
            break
    if summary:  # shown with a failure: where the time went
        print(f"{sid}: stages {summary.get('stage_seconds')}")
    return {**job, "summary": summary, "submit_output": out.stdout[-3000:] + out.stderr[-3000:]}


def _nodes_of(actors: list[dict[str, Any]], class_name: str) -> set[str]:
    return {a["node_id"] for a in actors if a["class_name"] == class_name and a.get("node_id")}


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


def check_outputs(summary: dict[str, Any], work: Path) -> None:
    """The registered model is in the store, under the alias, and predictions cover the test rows."""
    import mlflow
    import pyarrow.dataset as pads

    assert summary["model_uri"] == "models:/raypipe-demo@champion"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    versions = {str(v.version) for v in client.search_model_versions("name='raypipe-demo'")}
    assert str(summary["model_version"]) in versions
    assert str(client.get_model_version_by_alias("raypipe-demo", "champion").version) in versions
    predictions = pads.dataset(summary["outputs"]["test_predictions"], format="parquet")
    assert predictions.count_rows() == summary["counts"]["rows_test"] > 0
    assert "prediction" in predictions.schema.names


def test_two_node_cluster_refuses_node_local_storage(cluster: LocalCluster, working_dir: Path,
                                                    tmp_path: Path) -> None:
    job = submit(cluster, working_dir, [*SMALL, f"runtime.work_dir={tmp_path / 'work'}"], env_vars={})
    assert len(job["alive_nodes"]) == 2
    assert job["status"] == "FAILED", job["submit_output"]
    for field in ("runtime.storage_path", "tracking.uri", "batch.output_dir", "RAYPIPE_SHARED_DIRS"):
        assert field in job["logs"], f"{field} not named in the job's error:\n{job['logs'][-3000:]}"
    assert "the Ray cluster has 2 alive nodes" in job["logs"]


def test_data_parallel_training_workers_run_on_both_nodes(cluster: LocalCluster, working_dir: Path,
                                                          tmp_path: Path) -> None:
    work = tmp_path / "work"
    # One trial whose two Train workers each take a whole node's CPUs: the worker group must
    # span both nodes.
    job = submit(cluster, working_dir, [*SMALL, f"runtime.work_dir={work}", "train.num_samples=1",
                                        "train.num_workers=2", f"train.cpus_per_worker={NODE_CPUS}"],
                 env_vars={"RAYPIPE_SHARED_DIRS": str(tmp_path)})
    assert job["status"] == "SUCCEEDED", job["submit_output"] + job["logs"][-4000:]
    assert job["summary"]["parallelism"] == "data_parallel"
    check_outputs(job["summary"], work)
    assert_actors_on_every_node(cluster, job, "RayTrainWorker")


def test_tune_trials_run_on_both_nodes(cluster: LocalCluster, working_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    # Two concurrent in-process trials that each take a whole node's CPUs: one per node.
    job = submit(cluster, working_dir, [*SMALL, f"runtime.work_dir={work}", "train.num_samples=2",
                                        "train.num_workers=1", f"train.cpus_per_worker={NODE_CPUS}",
                                        "train.max_concurrent_trials=2"],
                 env_vars={"RAYPIPE_SHARED_DIRS": str(tmp_path)})
    assert job["status"] == "SUCCEEDED", job["submit_output"] + job["logs"][-4000:]
    assert job["summary"]["parallelism"] == "in_process"
    check_outputs(job["summary"], work)
    assert_actors_on_every_node(cluster, job, "ImplicitFunc")
