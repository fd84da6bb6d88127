"""pipelines/storage/shared.py: node-local paths fail early, by field, on a multi-node cluster only.

The cluster is described to the check (``nodes=`` as ``ray.nodes()`` returns them), so these
run without Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.config import load_config
from pipelines.storage.shared import (
    SHARED_DIRS_ENV,
    Location,
    SharedStorageError,
    check_shared_storage,
    local_path,
    require_shared,
    shared_dirs_from_env,
)


@pytest.fixture(autouse=True)
def _no_ambient_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    # Earlier tests in the session point MLflow at their own local store through the
    # environment; these configs must resolve their tracking URI from their own fields.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def node(node_id: str, cpus: float = 2, alive: bool = True) -> dict[str, Any]:
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": cpus} if cpus else {}}


ONE_NODE = [node("head")]
TWO_NODES = [node("head"), node("worker")]


def cfg(work_dir: Path, *overrides: str) -> Any:
    return load_config(None, [f"runtime.work_dir={work_dir}", *overrides])


@pytest.mark.parametrize(("uri", "expected"), [
    ("/data/x", "/data/x"), ("relative/dir", "relative/dir"), ("file:///data/x", "/data/x"),
    ("sqlite:////data/mlflow.db", "/data/mlflow.db"), ("sqlite:///mlflow.db", "mlflow.db"),
    ("sqlite:///:memory:", None), ("s3://bucket/x", None), ("gs://bucket/x", None),
    ("http://mlflow:5000", None), ("postgresql://u@db/mlflow", None), ("databricks", None),
])
def test_local_path_tells_node_local_from_remote(uri: str, expected: str | None) -> None:
    assert local_path(uri) == (Path(expected) if expected else None)


def test_single_node_accepts_local_paths(tmp_path: Path) -> None:
    check_shared_storage(cfg(tmp_path), nodes=ONE_NODE, driver_node_id="head", shared_dirs=[])


def test_multi_node_rejects_every_local_default_by_field(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SharedStorageError) as err:
        check_shared_storage(cfg(tmp_path), nodes=TWO_NODES, driver_node_id="head", shared_dirs=[])
    message = str(err.value)
    assert "the Ray cluster has 2 alive nodes" in message
    for field in ("runtime.storage_path", "tracking.uri", "batch.output_dir", "runtime.work_dir"):
        assert f"  {field}: " in message, f"{field} not named in:\n{message}"
    assert str(tmp_path / "ray_results") in message
    assert SHARED_DIRS_ENV in message  # says how to fix it


def test_dead_nodes_do_not_make_a_cluster(tmp_path: Path) -> None:
    nodes = [node("head"), node("gone", alive=False)]
    check_shared_storage(cfg(tmp_path), nodes=nodes, driver_node_id="head", shared_dirs=[])


def test_a_head_without_cpus_counts_as_multi_node(tmp_path: Path) -> None:
    # An autoscaling cluster with a num-cpus=0 head (the KubeRay manifests) starts as one node.
    with pytest.raises(SharedStorageError, match="driver's node offers no CPUs"):
        check_shared_storage(cfg(tmp_path), nodes=[node("head", cpus=0)], driver_node_id="head",
                             shared_dirs=[])


def test_declared_shared_dirs_and_remote_storage_pass(tmp_path: Path) -> None:
    check_shared_storage(cfg(tmp_path), nodes=TWO_NODES, driver_node_id="head",
                         shared_dirs=[tmp_path.resolve()])
    remote = cfg(tmp_path / "local", "runtime.storage_path=s3://bucket/ray", "tracking.uri=http://mlflow:5000",
                 "batch.output_dir=s3://bucket/out")
    with pytest.raises(SharedStorageError) as err:  # the stage cache and the demo data stay local
        check_shared_storage(remote, nodes=TWO_NODES, driver_node_id="head", shared_dirs=[])
    problems = [line for line in str(err.value).splitlines() if line.startswith("  ")]
    assert len(problems) == 2, problems
    assert all(p.startswith("  runtime.work_dir:") for p in problems), problems
    assert any("stage cache" in p for p in problems) and any("demo data" in p for p in problems)


def test_file_sources_are_checked_under_their_field(tmp_path: Path) -> None:
    config = tmp_path / "files.yaml"
    config.write_text("name: files\nsource: {kind: files, path: /local/only/*.parquet}\ntarget: y\n")
    files = load_config(config, [f"runtime.work_dir={tmp_path}"])
    with pytest.raises(SharedStorageError, match=r"source.path: /local/only/\*.parquet"):
        check_shared_storage(files, nodes=TWO_NODES, driver_node_id="head",
                             shared_dirs=[tmp_path.resolve()])


def test_shared_dirs_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_DIRS_ENV, f"{tmp_path / 'a'}:{tmp_path / 'b'}:")
    assert shared_dirs_from_env() == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]
    require_shared([Location("--output", str(tmp_path / "b" / "preds"))], nodes=TWO_NODES,
                   driver_node_id="head")
    with pytest.raises(SharedStorageError, match="--output"):
        require_shared([Location("--output", str(tmp_path / "c"))], nodes=TWO_NODES, driver_node_id="head")


def test_sqlite_sources_are_checked_and_postgres_passes(tmp_path: Path) -> None:
    base = [f"runtime.work_dir={tmp_path}", "runtime.storage_path=s3://b/ray",
            "tracking.uri=http://mlflow:5000", "batch.output_dir=s3://b/out"]
    sqlite = load_config(None, [*base, "source={kind: sql, url: 'sqlite:////local/x.db', "
                                       "table: t}"])
    with pytest.raises(SharedStorageError, match=r"source.url: sqlite:////local/x.db"):
        check_shared_storage(sqlite, nodes=TWO_NODES, driver_node_id="head", shared_dirs=[])
    pg = load_config(None, [*base, "source={kind: sql, url: 'postgresql://u@db/x', table: t}"])
    # The work dir (stage cache) is declared shared; the database is reached over the network.
    check_shared_storage(pg, nodes=TWO_NODES, driver_node_id="head",
                         shared_dirs=[tmp_path.resolve()])
