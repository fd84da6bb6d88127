"""The whole pipeline with its state in an object store and MLflow behind a tracking server.

``runtime.work_dir`` is a prefix in a bucket of the session's S3 server (moto on loopback);
tracking goes to a real ``mlflow server`` with a PostgreSQL backend and its artifacts in the
same S3 server, as in ``cluster/``. The run happens from an empty working folder, which must
stay empty: every stage output, the demo data, quarantine, plots, Tune results and the model
land in the bucket. Compared with the session's local run (``trained``: same config, same
seed), the model is the same.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pyarrow.dataset as pads
import pytest

from pipelines import tracking
from pipelines.runner import STAGES, RunSummary, run_pipeline
from pipelines.storage import storage_path
from tests.conftest import S3_BUCKET, small_config
from tests.integration.servers import Postgres, free_port
from tests.s3 import S3Server
from tests.tracking_server import TrackingServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # runs whole pipelines


@pytest.fixture(scope="module")
def tracking_server(s3: S3Server, postgres: Postgres,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """``mlflow server``: PostgreSQL for runs and registry, S3 for artifacts (proxied)."""
    backend = (f"postgresql+psycopg://{postgres.user}:{postgres.password}@127.0.0.1:"
               f"{postgres.port}/postgres")
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    server = TrackingServer(backend, free_port(), log,
                            extra=["--artifacts-destination", f"s3://{S3_BUCKET}/mlartifacts"],
                            env={**os.environ, **s3.env})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def on_s3(ray_address: str, tracking_server: TrackingServer,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs of the demo from an empty folder: the first computes, the second reuses."""
    root = f"s3://{S3_BUCKET}/runs/{uuid.uuid4().hex[:12]}"
    cfg = small_config(root, f"tracking.uri={tracking_server.uri}")  # type: ignore[arg-type]
    cwd = tmp_path_factory.mktemp("empty-cwd")
    before = Path.cwd()
    os.chdir(cwd)
    try:
        first = run_pipeline(cfg)
        second = run_pipeline(cfg)
    finally:
        os.chdir(before)
    return {"cfg": cfg, "root": storage_path(root), "first": first, "second": second,
            "cwd": cwd}


def _stage_dir(root: Any, name: str, stage: str) -> Any:
    entries = [f for f in (root / "cache" / name / stage).files() if f.endswith("_raypipe_stage.json")]
    assert len(entries) == 1, (stage, entries)
    return root / "cache" / name / stage / entries[0].split("/")[0]


def test_every_output_is_in_the_bucket_and_nothing_is_local(on_s3: dict[str, Any]) -> None:
    root, name = on_s3["root"], on_s3["cfg"].name
    files = root.files()
    for stage in ("validate", "split", "features", "train", "register", "batch", "evaluate"):
        assert (_stage_dir(root, name, stage) / "_raypipe_stage.json").is_file(), stage
    assert any(f.startswith("data/demo-3000-") for f in files)  # the generated source
    evaluate = _stage_dir(root, name, "evaluate")
    assert {"plots/roc_pr.png", "plots/confusion.png", "plots/feature_importance.png"} \
        <= set(evaluate.files())
    assert (_stage_dir(root, name, "train") / "model").files()  # the winning model's files
    assert any(f.startswith("ray_results/") for f in files)  # Tune's storage_path
    assert list(on_s3["cwd"].iterdir()) == []  # not one local file


def test_rows_in_equal_passed_plus_quarantined_in_the_bucket(on_s3: dict[str, Any]) -> None:
    root, summary = on_s3["root"], on_s3["first"]
    validate = _stage_dir(root, on_s3["cfg"].name, "validate")

    def rows(folder: Any) -> int:
        return int(pads.dataset(str(folder), format="parquet").count_rows())

    passed, quarantined = rows(validate / "valid"), rows(validate / "quarantine")
    assert quarantined > 0  # the demo has contract violations
    assert passed + quarantined == summary.counts["rows_in"] >= 3000
    assert passed == summary.counts["rows_valid"]


def test_mlflow_artifacts_live_in_the_object_store(on_s3: dict[str, Any], s3: S3Server) -> None:
    listed = s3.client().list_objects_v2(Bucket=S3_BUCKET, Prefix="mlartifacts/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith("MLmodel") for k in keys), keys[:20]
    assert any(k.endswith("feature_pipeline.json") for k in keys)


def test_same_model_as_the_local_run(on_s3: dict[str, Any], trained: dict[str, Any]) -> None:
    """Same code, data, config and seed: the same feature pipeline and the same predictions,
    whether the state lives on local disk or in the bucket."""
    local: RunSummary = trained["summary"]
    remote: RunSummary = on_s3["first"]
    assert remote.best_params == local.best_params and remote.metrics == local.metrics
    rows = pd.read_parquet(next((trained["work"] / "data").glob("demo-3000-*.parquet")))
    rows = rows.drop(columns=[trained["cfg"].target]).head(200)
    predictions = []
    for cfg, summary in ((trained["cfg"], local), (on_s3["cfg"], remote)):
        with tracking.tracking_scope(cfg):
            predictions.append(mlflow.pyfunc.load_model(summary.model_uri).predict(rows))
            path = mlflow.artifacts.download_artifacts(run_id=summary.run_id,
                                                       artifact_path="feature_pipeline.json")
            predictions.append(json.loads(Path(path).read_text()))
    pd.testing.assert_frame_equal(predictions[0], predictions[2])
    assert predictions[1] == predictions[3]


def test_unchanged_rerun_reuses_every_stage_from_the_bucket(on_s3: dict[str, Any]) -> None:
    first, second = on_s3["first"], on_s3["second"]
    assert first.reused_stages == []
    assert second.reused_stages == [s for s in STAGES if s != "ingest"]
    assert second.model_version == first.model_version
