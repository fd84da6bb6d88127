"""Hot model swap: under steady load the running app moves to the version the alias points at,
`raypipe promote` included, without losing a request; a version that fails to load leaves the
old one serving and /readyz degraded."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serving_helpers import ROW, free_port

pytestmark = pytest.mark.e2e

NAME = "raypipe-swap"
@pytest.fixture(scope="module")
def registry(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A registered model of its own (the shared champion stays put): versions 1 and 2 of the
    trained model, version 3 whose artifacts are missing; @champion on version 1."""
    import mlflow
    from mlflow import MlflowClient

    uri = trained["cfg"].tracking_uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    source = client.get_model_version("raypipe-demo", str(trained["summary"].model_version)).source
    versions = [str(mlflow.register_model(source, NAME).version) for _ in range(2)]
    broken_dir = tmp_path_factory.mktemp("broken-model")
    (broken_dir / "MLmodel").write_text("not: [a valid model\n")
    broken = str(client.create_model_version(NAME, source=str(broken_dir)).version)
    client.set_registered_model_alias(NAME, "champion", versions[0])
    return {"tracking_uri": uri, "v1": versions[0], "v2": versions[1], "broken": broken}


@pytest.fixture(scope="module")
def server(registry: dict[str, str]) -> Iterator[str]:
    from ray import serve

    from pipelines.serving import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"model_uri": f"models:/{NAME}@champion",
                         "tracking_uri": registry["tracking_uri"],
                         "model_poll_interval_s": 0.5}),
              name="raypipe-swap", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def _promote(registry: dict[str, str], version: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines", "promote", "--model", NAME, "--version", version,
         "--tracking-uri", registry["tracking_uri"]],
        capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "200"})


def _wait_for(server: str, path: str, key: str, value: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.time() + timeout
    body: dict[str, Any] = {}
    while time.time() < deadline:
        body = httpx.get(f"{server}{path}", timeout=10).json()
        if body.get(key) == value:
            return body
        time.sleep(0.2)
    raise AssertionError(f"{path} never had {key}={value}: {body}")


def test_hot_swap_under_load_loses_no_request(server: str, registry: dict[str, str]) -> None:
    assert httpx.get(f"{server}/metadata", timeout=10).json()["version"] == registry["v1"]
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{server}/predict", json={"instances": [ROW]})
                    version = r.json()["model"]["version"] if r.status_code == 200 else None
                    answers.append((r.status_code, version))
                except httpx.HTTPError as err:  # a dropped connection is a lost request
                    answers.append((0, repr(err)))

    clients = [threading.Thread(target=load) for _ in range(2)]
    for t in clients:
        t.start()
    try:
        time.sleep(1.5)
        r = _promote(registry, registry["v2"])
        assert r.returncode == 0, r.stderr
        assert f"{NAME}@champion -> version {registry['v2']}" in r.stderr
        assert f"(was {registry['v1']})" in r.stderr
        _wait_for(server, "/metadata", "version", registry["v2"])
        seen_v2 = len(answers)
        while len(answers) < seen_v2 + 20:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=30)
    assert len(answers) > 40
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:5]
    versions = [v for _, v in answers]
    assert versions[0] == registry["v1"] and versions[-1] == registry["v2"]
    # Each client moved once from the old version to the new one, never back.
    first_new = versions.index(registry["v2"])
    assert set(versions[:first_new]) == {registry["v1"]}
    assert versions[-20:] == [registry["v2"]] * 20
    meta = httpx.get(f"{server}/metadata", timeout=10).json()
    assert meta["swaps"] == 1 and meta["status"] == "ready" and meta["alias"] == "champion"


def test_a_version_that_fails_to_load_keeps_the_old_one_and_reports_degraded(
        server: str, registry: dict[str, str]) -> None:
    from mlflow import MlflowClient

    current = httpx.get(f"{server}/metadata", timeout=10).json()["version"]
    client = MlflowClient(registry["tracking_uri"])
    client.set_registered_model_alias(NAME, "champion", registry["broken"])
    try:
        ready = _wait_for(server, "/readyz", "status", "degraded")
        assert ready["model"]["version"] == current
        # The open probe gives a coarse reason; the error itself is in /metadata.
        assert ready["reason"] == "the model version failed to load" and "error" not in ready
        r = httpx.post(f"{server}/predict", json={"instances": [ROW]}, timeout=30)
        assert r.status_code == 200 and r.json()["model"]["version"] == current
        meta = httpx.get(f"{server}/metadata", timeout=10).json()
        assert meta["status"] == "degraded" and f"/{registry['broken']}" in meta["error"]
    finally:
        client.set_registered_model_alias(NAME, "champion", current)
    _wait_for(server, "/readyz", "status", "ready")


def test_promote_refuses_an_unknown_version(registry: dict[str, str], tmp_path: Path) -> None:
    r = _promote(registry, "999")
    assert r.returncode == 1
    assert "cannot point" in r.stderr and "999" in r.stderr
    assert "Traceback" not in r.stderr
