"""Bearer-token auth (401 without the token, probes open, the token never logged) and overload
(beyond max_ongoing_requests + max_queued_requests the app answers 503 at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serving_helpers import MODEL, ROW, free_port

pytestmark = pytest.mark.e2e

TOKEN = "tok-" + "4f9c2e7a1b3d5f60"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    from pipelines.serving import build_app

    secret = tmp_path_factory.mktemp("secret") / "token"
    secret.write_text(TOKEN + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"model_uri": f"models:/{MODEL}@champion",
                         "tracking_uri": trained["cfg"].tracking_uri,
                         "auth_token_file": str(secret), "model_poll_interval_s": 0,
                         "max_ongoing_requests": 1, "max_queued_requests": 1,
                         "overload_retry_after_s": 2}),
              name="raypipe-limits", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/predict", {"instances": [ROW]}),
    ("post", "/invocations", {"dataframe_records": [ROW]}),
    ("post", f"/v2/models/{MODEL}/infer", {"inputs": []}),
    ("get", "/metadata", None),
    ("get", f"/v2/models/{MODEL}", None),
])
def test_protected_endpoints_need_the_bearer_token(server: str, method: str, path: str,
                                                   body: Any) -> None:
    kw: dict[str, Any] = {"json": body} if body is not None else {}
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN},
                    {"authorization": f"Basic {TOKEN}"}):
        r = httpx.request(method, f"{server}{path}", headers=headers, timeout=30, **kw)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in r.text
    r = httpx.request(method, f"{server}{path}", headers=AUTH, timeout=30, **kw)
    assert r.status_code in (200, 400), r.text  # /v2 infer with no inputs: a 400, past auth


def test_probes_and_docs_need_no_token(server: str) -> None:
    for path in ("/healthz", "/readyz", "/ping", "/v2/health/live", "/v2/health/ready",
                 "/openapi.json"):
        assert httpx.get(f"{server}{path}", timeout=30).status_code == 200, path


def test_the_token_is_never_logged(server: str) -> None:
    import ray

    httpx.post(f"{server}/predict", json={"instances": [ROW]}, headers=AUTH, timeout=30)
    httpx.post(f"{server}/predict", json={"instances": [ROW]},
               headers={"authorization": "Bearer not-it"}, timeout=30)
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert any("serve" in str(p) for p in files)
    leaked = [p for p in files if TOKEN.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_overload_answers_503_at_once_and_recovers(server: str) -> None:
    big = {"instances": [ROW] * 5000}  # ~tens of ms of work each

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, headers=AUTH,
                                     limits=httpx.Limits(max_connections=40)) as client:
            return list(await asyncio.gather(*(client.post(f"{server}/predict", json=big)
                                               for _ in range(24))))

    answers = asyncio.run(burst())
    statuses = [r.status_code for r in answers]
    rejected_s = [r.elapsed.total_seconds() for r in answers if r.status_code == 503]
    admitted_s = [r.elapsed.total_seconds() for r in answers if r.status_code == 200]
    print(f"\noverload: {len(answers)} concurrent requests of 5000 rows against capacity 2 "
          f"(1 ongoing + 1 queued): {statuses.count(200)} answered 200 (slowest "
          f"{max(admitted_s, default=0):.2f} s), {statuses.count(503)} answered 503 with "
          f"Retry-After (slowest {max(rejected_s, default=0):.2f} s), "
          f"{len(answers) - statuses.count(200) - statuses.count(503)} other")
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 5, statuses
    assert statuses.count(200) >= 1, statuses
    assert max(rejected_s) < 10, rejected_s  # refused at once, not after queueing
    rejected = next(r for r in answers if r.status_code == 503)
    assert rejected.headers.get("retry-after") == "2"
    ok = httpx.post(f"{server}/predict", json={"instances": [ROW]}, headers=AUTH, timeout=30)
    assert ok.status_code == 200
