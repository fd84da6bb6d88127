"""`ray job submit` of the pipeline to a real two-node Ray cluster on this machine.

A head and a second node (``ray start --address``: its own raylet, 2 CPUs each) are started on
free ports, the pipeline is submitted with ``--working-dir`` and the bundled config, and the
registered model, the predictions and where the work ran are checked. Storage is a local
folder that both nodes see, declared shared through ``RAYPIPE_SHARED_DIRS``; without that
declaration the run is refused, naming the fields. Marker ``cluster``: ``pytest -m cluster``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.jobs import app_dir, assert_actors_on_every_node, submit
from tests.cluster.local_cluster import LocalCluster, kill_leftovers, local_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(420)]

SMALL = ["source.rows=2000"]            # scale only: the rest is the config's
NODE_CPUS = 2                           # per node; a trial or Train worker below takes all of them


@pytest.fixture(scope="module")
def working_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return app_dir(tmp_path_factory.mktemp("app"))


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
