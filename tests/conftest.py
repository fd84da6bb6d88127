"""Shared fixtures: one local Ray instance per test run, and one small trained pipeline."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipelines.config import PipelineConfig, load_config

if TYPE_CHECKING:
    from pipelines.storage import StoragePath
    from tests.s3 import S3Server

# Small but real: every stage runs, on data big enough for stratification and Tune.
SMALL_RUN = [
    "source.rows=3000",
    "train.num_samples=4",
    "train.xgboost.num_boost_round=40",
    "train.xgboost.early_stopping_rounds=10",
    "schema.max_quarantine_fraction=0.05",
]


def small_config(work_dir: Path, *extra: str) -> PipelineConfig:
    """The bundled demo config, scaled down through overrides (never by patching)."""
    return load_config(None, [*SMALL_RUN, f"runtime.work_dir={work_dir}", *extra])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every end-to-end and cluster test is ``slow``: the inner-loop lane (``-m "not slow"``)
    runs the unit tests and the integration tests that do not run a whole pipeline (the
    integration modules that do carry the mark themselves)."""
    for item in items:
        if item.get_closest_marker("e2e") or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _tracking_uri_stays_put() -> Iterator[None]:
    """Undo the ``MLFLOW_TRACKING_URI`` a test leaves behind.

    ``mlflow.set_tracking_uri`` exports the variable, and a config without ``tracking.uri``
    defaults to it: left set, every later test's pipeline would register its models in the
    store of whichever test ran before (moving that store's ``@champion``).
    """
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """The session's S3-compatible server (moto, on loopback), with its environment exported.

    Exported before the shared Ray instance starts (``ray_address`` depends on this), so Ray
    workers, CLI subprocesses and job drivers inherit the endpoint and credentials the way a
    cluster's nodes get them: from the SDK's standard environment.
    """
    from tests.s3 import s3_server

    with s3_server() as server:
        saved = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        server.bucket(S3_BUCKET)
        yield server
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


S3_BUCKET = "raypipe-tests"


@pytest.fixture(params=["local", "s3"])
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> StoragePath:
    """An empty folder in each back end: a local one, and a fresh prefix in the S3 bucket."""
    from pipelines.storage import storage_path

    if request.param == "local":
        return storage_path(tmp_path / "store")
    request.getfixturevalue("s3")
    return storage_path(f"s3://{S3_BUCKET}/{uuid.uuid4().hex}")


@pytest.fixture(scope="session")
def ray_address(s3: S3Server) -> Iterator[str]:
    """Start (or join, when RAY_ADDRESS is set by .ci/run) the one Ray instance of this run.

    The address is exported so that CLI subprocesses join the same instance instead of
    starting their own. The test PostgreSQL password is exported first: read tasks read it
    from the worker's environment, inherited from the instance started here (an instance
    joined through RAY_ADDRESS must have been started with it, like every node of a cluster).
    """
    import ray

    from tests.integration.servers import PG_PASSWORD, PG_PASSWORD_ENV

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ[PG_PASSWORD_ENV] = PG_PASSWORD
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        address = ray.get_runtime_context().gcs_address
        os.environ["RAY_ADDRESS"] = address
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield address
    ray.shutdown()


@pytest.fixture(scope="session")
def trained(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the whole pipeline once on a small demo data set; many tests read its outputs."""
    from pipelines.runner import run_pipeline

    work = tmp_path_factory.mktemp("trained")
    cfg = small_config(work)
    events: list[tuple[str, str]] = []
    model_dirs = set(Path(tempfile.gettempdir()).glob("raypipe-model-*"))
    summary = run_pipeline(cfg, on_stage=lambda s, e, d: events.append((s, e)))
    # This run's stage folders: later tests run other configs into the same work dir.
    entries = [p.parent for p in (work / "cache").glob("*/*/*/_raypipe_stage.json")]
    left = set(Path(tempfile.gettempdir()).glob("raypipe-model-*")) - model_dirs
    return {"cfg": cfg, "summary": summary, "events": events, "work": work, "entries": entries,
            "temporary_model_dirs_left": left}
