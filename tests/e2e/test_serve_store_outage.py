"""The MLflow tracking server goes away: running replicas keep serving the model they hold and
report degraded; a replica started while it is away comes up not-ready (503 with Retry-After,
liveness still 200) instead of crashing, and loads the model once the server is back.

A real ``mlflow server`` over a copy of the trained store is started and SIGKILLed. Prints the
figures RELIABILITY.md reports.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.serving_helpers import MODEL, ROW, free_port, serve_app
from tests.tracking_server import TrackingServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def store(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    src = trained["cfg"].tracking_uri
    assert src.startswith("sqlite:///"), src
    copy = tmp_path_factory.mktemp("store") / "mlflow.db"
    shutil.copy(src.removeprefix("sqlite:///"), copy)  # model artifacts stay where they are
    server = TrackingServer(f"sqlite:///{copy}", free_port(), copy.with_suffix(".log"))
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def _wait_status(url: str, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.time() + timeout
    body: dict[str, Any] = {}
    while time.time() < deadline:
        body = httpx.get(f"{url}/readyz", timeout=10).json()
        if body.get("status") == status:
            return body
        time.sleep(0.2)
    raise AssertionError(f"/readyz never said {status}: {body}")


def test_store_outage_keeps_serving_and_a_cold_start_waits_not_ready(store: TrackingServer) -> None:
    from ray import serve

    from pipelines.serving import build_app

    # Credentials in the tracking URI (the server ignores them): the store's errors quote the
    # URI, and no probe, metadata answer or log may repeat the password.
    secret = "s3cret-pw"
    args = {"model_uri": f"models:/{MODEL}@champion",
            "tracking_uri": store.uri.replace("://", f"://admin:{secret}@", 1),
            "model_poll_interval_s": 0.5, "model_retry_interval_s": 0.5}
    with serve_app("raypipe-outage", args) as url:
        assert _wait_status(url, "ready")["model"]["name"] == MODEL
        store.kill()
        t0 = time.time()
        statuses = [httpx.post(f"{url}/predict", json={"instances": [ROW]}, timeout=30).status_code
                    for _ in range(50)]
        degraded = _wait_status(url, "degraded")
        degraded_text = json.dumps(degraded)
        reported_s = time.time() - t0
        statuses += [httpx.post(f"{url}/predict", json={"instances": [ROW]}, timeout=30).status_code
                     for _ in range(50)]
        assert degraded["model"]["name"] == MODEL
        assert degraded["reason"] == "the model store is unreachable" and "error" not in degraded
        meta = httpx.get(f"{url}/metadata", timeout=10).json()
        assert "admin:***@" in meta["error"] and secret not in json.dumps(meta)

        # A second app starts while the store is down: up and alive, not ready.
        serve.run(build_app(args), name="raypipe-cold",
                  route_prefix="/cold")
        cold = f"{url}/cold"
        live = httpx.get(f"{cold}/healthz", timeout=10)
        ready = httpx.get(f"{cold}/readyz", timeout=10)
        refused = httpx.post(f"{cold}/predict", json={"instances": [ROW]}, timeout=30)
        v2_ready = httpx.get(f"{cold}/v2/health/ready", timeout=10)

        store.start()
        t1 = time.time()
        _wait_status(url, "ready")
        _wait_status(cold, "ready")
        recovered_s = time.time() - t1
        after = httpx.post(f"{cold}/predict", json={"instances": [ROW]}, timeout=30)
    print(f"\nstore outage: {len(statuses)} requests during the outage, "
          f"{sum(s != 200 for s in statuses)} failed; degraded reported after {reported_s:.1f} s; "
          f"cold start: healthz {live.status_code}, readyz {ready.status_code}, "
          f"predict {refused.status_code}; both ready {recovered_s:.1f} s after the store came back")
    assert statuses == [200] * 100
    assert live.status_code == 200 and live.json()["model"] is None
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    assert ready.json()["reason"] == "the model store is unreachable"
    assert secret not in ready.text and secret not in degraded_text
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "no model loaded yet" in refused.json()["error"]
    assert v2_ready.status_code == 503
    assert after.status_code == 200 and after.json()["predictions"][0] in (0, 1)
