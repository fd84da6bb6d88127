"""The pipeline on two Ray nodes that share no disk: only an S3 server and an MLflow server.

The nodes come from :mod:`tests.cluster.isolated_cluster`: each ``ray start`` runs in its own
mount namespace, with its own Ray temp dir (where ``ray job submit`` unpacks the working dir)
and its own copy of ``LOCAL``, a folder standing in for a node's local disk. What one node
writes to a local path the other cannot read, so a run that leaves anything on a node's disk
and reads it elsewhere fails. Everything the pipeline keeps goes to ``runtime.work_dir`` in a
bucket of moto's S3 server; tracking to ``mlflow server`` (PostgreSQL, artifacts proxied to
the same S3 server). Both servers run beside the cluster, like managed services; the nodes get
the store's endpoint and credentials from their environment (the SDK's standard variables),
as pods get them from a Secret. Marker ``cluster``: ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow.dataset as pads
import pytest

from pipelines.runner import STAGES, run_pipeline
from pipelines.storage import StoragePath, storage_path
from tests.cluster.isolated_cluster import (
    HEAD,
    WORKER,
    IsolatedCluster,
    isolated_two_node_cluster,
    isolation_unavailable,
)
from tests.cluster.jobs import app_dir, assert_actors_on_every_node, job_report, submit
from tests.cluster.local_cluster import kill_leftovers
from tests.conftest import S3_BUCKET, small_config
from tests.e2e.serving_helpers import ROW
from tests.integration.servers import free_port, postgres_server
from tests.s3 import S3Server
from tests.tracking_server import TrackingServer

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(600)]

NODE_CPUS = 2
# The run: small data; two trials of 2 CPUs each at once, so one per node; two batch actors
# of 1 CPU, spread over the nodes by Ray Data (its scheduling strategy is SPREAD), each
# leaving a CPU for the read tasks that feed it (batches of 100 rows: the pool starts no more
# actors than there are batches, and the ~300 test rows would be one default batch). FIFO:
# trial results do not depend on report order.
RUN = ["source.rows=2000", "train.num_samples=2", "train.max_concurrent_trials=2",
       "train.num_workers=1", f"train.cpus_per_worker={NODE_CPUS}", "train.scheduler=fifo",
       "train.xgboost.num_boost_round=40", "train.xgboost.early_stopping_rounds=10",
       "batch.concurrency=2", "batch.num_cpus_per_actor=1", "batch.batch_size=100",
       "evaluate.explain_rows=0"]
CACHED = [s for s in STAGES if s != "ingest"]


@pytest.fixture(scope="module")
def tracking(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """``mlflow server`` with a PostgreSQL store and its artifacts in the S3 server."""
    with postgres_server() as pg:
        backend = f"postgresql+psycopg://{pg.user}:{pg.password}@127.0.0.1:{pg.port}/postgres"
        log = tmp_path_factory.mktemp("mlflow") / "server.log"
        server = TrackingServer(backend, free_port(), log, env={**os.environ, **s3.env},
                                extra=["--artifacts-destination", f"s3://{S3_BUCKET}/nsd-mlflow"])
        server.start()
        yield server
        server.stop()


@pytest.fixture(scope="module")
def cluster(s3: S3Server) -> Iterator[IsolatedCluster]:
    reason = isolation_unavailable()
    if reason:
        pytest.skip(reason)
    # A short root: Ray's Unix socket paths under it must stay below the 107-byte limit.
    root = Path(tempfile.mkdtemp(prefix="rpns-", dir="/tmp"))
    local = Path(tempfile.mkdtemp(prefix="rpns-local-", dir="/tmp"))  # beside root, not in it
    try:
        with isolated_two_node_cluster(root, private_dirs=[local], head_cpus=NODE_CPUS,
                                       worker_cpus=NODE_CPUS, env_extra=s3.env) as c:
            yield c
    finally:
        kill_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)


@pytest.fixture(scope="module")
def working_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return app_dir(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def bucket_root() -> StoragePath:
    return storage_path(f"s3://{S3_BUCKET}/nsd-{uuid.uuid4().hex[:10]}")


def _overrides(root: StoragePath, tracking: TrackingServer, *extra: str) -> list[str]:
    return [*RUN, f"runtime.work_dir={root}", f"tracking.uri={tracking.uri}", *extra]


@pytest.fixture(scope="module")
def first(cluster: IsolatedCluster, working_dir: Path, tracking: TrackingServer,
          bucket_root: StoragePath) -> dict[str, Any]:
    """The first run on the cluster: computes every stage."""
    job = submit(cluster, working_dir, _overrides(bucket_root, tracking), env_vars={})
    assert job["status"] == "SUCCEEDED", job["submit_output"] + job["logs"][-5000:]
    return job


def _stage(root: StoragePath, stage: str) -> StoragePath:
    """The one finished cache entry of ``stage`` under ``root`` (the demo pipeline's)."""
    entries = sorted(f.split("/")[0] for f in (root / "cache" / "raypipe-demo" / stage).files()
                     if f.endswith("/_raypipe_stage.json"))
    assert len(entries) == 1, (stage, entries)
    return root / "cache" / "raypipe-demo" / stage / entries[0]


def _rows(folder: StoragePath) -> int:
    return int(pads.dataset(str(folder), format="parquet").count_rows()) if folder.exists() else 0


def _predictions(folder: StoragePath | Path) -> pd.DataFrame:
    frame = pads.dataset(str(folder), format="parquet").to_table().to_pandas()
    frame = frame.drop(columns=["model_version"])  # a per-store model id
    return frame.sort_values("customer_id").reset_index(drop=True)


def test_trials_and_batch_actors_ran_on_both_nodes(cluster: IsolatedCluster,
                                                   first: dict[str, Any]) -> None:
    assert len(first["alive_nodes"]) == 2
    assert first["summary"]["parallelism"] == "in_process"
    assert_actors_on_every_node(cluster, first, "ImplicitFunc")       # Tune trials
    assert_actors_on_every_node(cluster, first, "MapWorker(MapBatches(PyfuncPredictor))")


def test_rows_in_equal_passed_plus_quarantined_in_the_bucket(first: dict[str, Any],
                                                             bucket_root: StoragePath) -> None:
    counts = first["summary"]["counts"]
    validate = _stage(bucket_root, "validate")
    passed, quarantined = _rows(validate / "valid"), _rows(validate / "quarantine")
    assert quarantined > 0 and passed + quarantined == counts["rows_in"] >= 2000
    split = _stage(bucket_root, "split")
    assert sum(_rows(split / s) for s in ("train", "valid", "test")) == passed
    assert _rows(_stage(bucket_root, "batch") / "test_predictions") == counts["rows_test"]


def test_model_artifacts_are_in_the_object_store(first: dict[str, Any]) -> None:
    """The tracking server proxied the model's artifacts to the bucket: no node holds them."""
    artifacts = storage_path(f"s3://{S3_BUCKET}/nsd-mlflow").files()
    assert any(f.endswith("/MLmodel") for f in artifacts), sorted(artifacts)[:20]
    assert any(f.endswith("feature_pipeline.json") for f in artifacts)


def test_nothing_was_left_on_a_node(cluster: IsolatedCluster, first: dict[str, Any]) -> None:
    """No node kept state of its own: no `.raypipe` folder in any node's unpacked working dir
    (where a relative default would land), nothing in the node-local folder."""
    for node in (HEAD, WORKER):
        temp = cluster.node_path(node, cluster.ray_temp_dir)
        assert not [p for p in temp.rglob(".raypipe") if p.is_dir()], node
        assert list(cluster.node_path(node, cluster.private_dirs[0]).iterdir()) == [], node


def test_the_model_is_the_one_a_single_node_local_run_makes(
        first: dict[str, Any], bucket_root: StoragePath, ray_address: str,
        tmp_path: Path, s3: S3Server) -> None:
    """Same config and seed on one node with local folders: the same feature pipeline and the
    same predictions of the test split (those the registered model made in batch)."""
    local_cfg = small_config(tmp_path, *RUN, "batch.concurrency=1",
                             "batch.num_cpus_per_actor=0.25")
    local = run_pipeline(local_cfg)
    assert local.best_params == first["summary"]["best_params"]
    remote_features = (_stage(bucket_root, "features") / "feature_pipeline.json").read_text()
    (local_features,) = tmp_path.glob("cache/*/features/*/feature_pipeline.json")
    assert json.loads(remote_features) == json.loads(local_features.read_text())
    (local_predictions,) = tmp_path.glob("cache/*/batch/*/test_predictions")
    pd.testing.assert_frame_equal(
        _predictions(_stage(bucket_root, "batch") / "test_predictions"),
        _predictions(local_predictions))


def test_unchanged_rerun_reuses_every_stage_from_the_bucket(
        cluster: IsolatedCluster, working_dir: Path, tracking: TrackingServer,
        bucket_root: StoragePath, first: dict[str, Any]) -> None:
    again = submit(cluster, working_dir, _overrides(bucket_root, tracking), env_vars={})
    assert again["status"] == "SUCCEEDED", again["logs"][-4000:]
    assert again["summary"]["reused_stages"] == CACHED
    assert again["summary"]["model_version"] == first["summary"]["model_version"]


def test_a_node_local_location_is_refused_naming_the_field(
        cluster: IsolatedCluster, working_dir: Path, tracking: TrackingServer,
        bucket_root: StoragePath) -> None:
    """The check is real: one location left on a node's disk fails the run before any stage."""
    local = cluster.private_dirs[0] / "ray_results"
    job = submit(cluster, working_dir,
                 _overrides(bucket_root, tracking, f"runtime.storage_path={local}"), env_vars={})
    assert job["status"] == "FAILED"
    assert f"runtime.storage_path: {local} is a node-local path" in job["logs"], job["logs"][-3000:]
    assert "tracking.uri" not in job["logs"].split("node-local path", 1)[1].split("\n", 1)[1][:200]


def _trial_checkpoints(root: StoragePath) -> set[str]:
    return {f.split("/")[1] for f in (root / "ray_results").files()
            if "/checkpoint_" in f and f.count("/") >= 3}


def test_killed_driver_resumes_from_the_bucket(
        cluster: IsolatedCluster, working_dir: Path, tracking: TrackingServer,
        bucket_root: StoragePath, first: dict[str, Any]) -> None:
    """Kill the driver mid-sweep (a new sweep: longer trials, on the cached splits); the
    resumed job finishes it without redoing the stages that finished before the kill."""
    longer = _overrides(bucket_root, tracking, "train.num_samples=4",
                        "train.xgboost.num_boost_round=150",
                        "train.xgboost.early_stopping_rounds=150")
    before = _trial_checkpoints(bucket_root)
    sid = submit(cluster, working_dir, longer, env_vars={}, wait=False)["submission_id"]
    deadline = time.time() + 240
    while time.time() < deadline and not (_trial_checkpoints(bucket_root) - before):
        time.sleep(1)
    assert _trial_checkpoints(bucket_root) - before, "no trial checkpointed before the deadline"
    stopped = cluster.ray_cli("job", "stop", "--address", cluster.dashboard_url, sid, timeout=60)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert job_report(cluster, sid)["status"] == "STOPPED"

    resumed = submit(cluster, working_dir, longer, env_vars={}, flags=("--resume",))
    assert resumed["status"] == "SUCCEEDED", resumed["logs"][-5000:]
    assert {"validate", "split", "features"} <= set(resumed["summary"]["reused_stages"])
    assert "train" not in resumed["summary"]["reused_stages"]
    sweeps = {f.split("/")[0] for f in (bucket_root / "ray_results").files()}
    assert len(sweeps) == 2  # the first run's sweep and this one, continued in place


def _serve(cluster: IsolatedCluster, working_dir: Path, tracking: TrackingServer,
           port: int) -> str:
    """``raypipe serve`` as a job: its driver runs on the head, like any other client of the
    cluster's nodes. Returns the submission id; the job runs until stopped."""
    sid = f"raypipe-serve-{uuid.uuid4().hex[:8]}"
    out = cluster.ray_cli(
        "job", "submit", "--address", cluster.dashboard_url, "--submission-id", sid,
        "--working-dir", str(working_dir), "--no-wait", "--",
        "python", "-m", "pipelines", "serve", "--tracking-uri", tracking.uri, "--port", str(port),
        "--set", "serve.num_replicas=2", "--set", "serve.num_cpus_per_replica=1.5",
        "--set", "serve.model_poll_interval_s=1", "--set", "serve.proxy_location=HeadOnly",
        timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return sid


def test_serve_replicas_on_both_nodes_load_the_champion_and_swap(
        cluster: IsolatedCluster, working_dir: Path, tracking: TrackingServer,
        first: dict[str, Any]) -> None:
    """Replicas on the worker node too load ``models:/raypipe-demo@champion`` from the
    tracking server (artifacts in S3) and follow the alias to a new version."""
    import mlflow

    port = free_port()
    sid = _serve(cluster, working_dir, tracking, port)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            report = job_report(cluster, sid)
            assert report["status"] in ("PENDING", "RUNNING"), report["logs"][-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            raise AssertionError(f"serve did not come up:\n{job_report(cluster, sid)['logs'][-3000:]}")
        replicas = [a for a in cluster.state("actors", "state=ALIVE")
                    if a["class_name"].startswith("ServeReplica")]
        assert {a["node_id"] for a in replicas} == set(cluster.node_ids.values()), replicas
        instance = ROW
        first_answer = httpx.post(f"{url}/predict", json={"instances": [instance]}, timeout=30)
        assert first_answer.status_code == 200, first_answer.text
        client = mlflow.MlflowClient(tracking_uri=tracking.uri)
        version = str(client.get_model_version_by_alias("raypipe-demo", "champion").version)
        assert first_answer.json()["model"]["version"] == version

        # A new champion: a second version of the model, the alias moved to it.
        source = client.get_model_version("raypipe-demo", version)
        mlflow.set_tracking_uri(tracking.uri)  # undone after the test (tests/conftest.py)
        new = mlflow.register_model(source.source, "raypipe-demo")
        client.set_registered_model_alias("raypipe-demo", "champion", str(new.version))
        deadline = time.time() + 120
        seen: set[str] = set()
        while time.time() < deadline and seen != {str(new.version)}:
            # Several answers: every replica must have swapped, not just one.
            seen = {httpx.post(f"{url}/predict", json={"instances": [instance]}, timeout=30)
                    .json()["model"]["version"] for _ in range(8)}
            time.sleep(1)
        assert seen == {str(new.version)}, seen
    finally:
        cluster.ray_cli("job", "stop", "--address", cluster.dashboard_url, sid, timeout=120)
