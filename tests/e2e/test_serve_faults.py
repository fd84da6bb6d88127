"""A Serve replica is killed (SIGKILL) while clients send steady traffic: Serve replaces it,
and clients that retry idempotent predictions (pipelines.serving.client) lose no request.

Prints the figures RELIABILITY.md reports: requests sent, answered on the first try, retried,
and failed after retries.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipelines.serving.client import RetryPolicy, post_with_retry
from tests.e2e.serving_helpers import MODEL, ROW, replica_pids, serve_app, while_attacked

pytestmark = pytest.mark.e2e

APP = "raypipe-faults"


@pytest.fixture(scope="module")
def server(trained: dict[str, Any]) -> Iterator[str]:
    with serve_app(APP, {"model_uri": f"models:/{MODEL}@champion",
                         "tracking_uri": trained["cfg"].tracking_uri, "num_replicas": 2,
                         "model_poll_interval_s": 0}) as url:
        yield url


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications.get(APP)
    if app is None:
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())


def test_killed_replica_under_traffic_loses_no_request_with_client_retry(server: str) -> None:
    before = replica_pids(APP)
    assert len(before) == 2, before
    outcomes: list[tuple[int, int]] = []  # (final status, attempts)
    errors: list[str] = []
    stop = threading.Event()
    policy = RetryPolicy(attempts=10, backoff_s=0.1, max_backoff_s=2.0, deadline_s=60)

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    out = post_with_retry(c, f"{server}/predict", json={"instances": [ROW]},
                                          policy=policy)
                    outcomes.append((out.response.status_code, out.attempts))
                except httpx.TransportError as err:
                    errors.append(repr(err))
                time.sleep(0.02)  # steady traffic, not a flood

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        victim, pid = next(iter(before.items()))
        os.kill(pid, signal.SIGKILL)
        killed_at, sent_before_kill = time.time(), len(outcomes)
        deadline = killed_at + 120
        while time.time() < deadline:  # Serve notices the death and starts a replacement
            now = replica_pids(APP) if _running_replicas() == 2 else {}
            if len(now) == 2 and pid not in now.values():
                break
            time.sleep(0.5)
        recovered_s = time.time() - killed_at
        mark = len(outcomes)
        while len(outcomes) < mark + 30:  # and it serves again afterwards
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=90)
    after = replica_pids(APP)
    failed = [o for o in outcomes if o[0] != 200]
    retried = [o for o in outcomes if o[1] > 1]
    print(f"\nreplica kill: {len(outcomes) + len(errors)} requests sent "
          f"({sent_before_kill} before the kill), {len(retried)} needed a retry "
          f"(max {max((o[1] for o in outcomes), default=0)} tries), "
          f"{len(failed) + len(errors)} failed after retries; "
          f"replica replaced in {recovered_s:.1f} s")
    assert pid not in after.values() and len(after) == 2, (victim, before, after)
    assert not errors and not failed, (errors[:3], failed[:3])
    assert len(outcomes) > sent_before_kill + 30


def test_a_request_cannot_choose_the_model(server: str, tmp_path: Any) -> None:
    """Models come only from the configured URI: no body field, query, header or path makes the
    server load another (a model is pickled code, so loading one from a request would be remote
    code execution)."""
    planted = tmp_path / "evil"
    planted.mkdir()
    (planted / "MLmodel").write_text("python_function: {loader_module: os}\n")
    before = httpx.get(f"{server}/metadata", timeout=10).json()
    attempts = [
        ("post", "/predict", {"instances": [ROW], "model_uri": str(planted)}, {}),
        ("post", f"/predict?model_uri={planted}", {"instances": [ROW]}, {}),
        ("post", "/predict", {"instances": [ROW]}, {"x-model-uri": str(planted)}),
        ("post", "/invocations", {"dataframe_records": [ROW], "params": {"model_uri": str(planted)}},
         {}),
        ("post", f"/v2/models/{str(planted).replace('/', '%2F')}/infer", {"inputs": []}, {}),
        ("get", f"/v2/models/{MODEL}/versions/..%2F..%2F{planted.name}", None, {}),
        ("get", "/v2/models/models:%2F%2Fother@champion/ready", None, {}),
    ]
    answers = []
    for method, path, body, headers in attempts:
        kw: dict[str, Any] = {"json": body} if body is not None else {}
        r = httpx.request(method, f"{server}{path}", headers=headers, timeout=30, **kw)
        answers.append(r.status_code)
        if r.status_code == 200:  # the field was ignored: the configured model answered
            assert r.json().get("model", before)["version"] == before["version"], (path, r.text)
        else:
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    after = httpx.get(f"{server}/metadata", timeout=10).json()
    print(f"\nmodel from request: {len(attempts)} attempts, answers {answers}, "
          f"model still {after['model_uri']} v{after['version']}, swaps {after['swaps']}")
    assert (after["version_uri"], after["swaps"]) == (before["version_uri"], before["swaps"])


def test_request_time_and_size_are_bounded(trained: dict[str, Any], server: str) -> None:
    """A request not answered within serve.request_timeout_s gets 504 (the replica stays up);
    a body over serve.max_body_bytes or more rows than serve.max_request_rows gets 413."""
    from ray import serve

    from pipelines.serving import build_app

    def deploy(timeout_s: float) -> str:
        serve.run(build_app({"model_uri": f"models:/{MODEL}@champion",
                             "tracking_uri": trained["cfg"].tracking_uri,
                             "model_poll_interval_s": 0, "request_timeout_s": timeout_s,
                             "max_body_bytes": 4_000_000, "max_request_rows": 10_000}),
                  name="raypipe-bounded", route_prefix="/bounded")
        return f"{server}/bounded"

    url = deploy(0.02)
    t0 = time.perf_counter()
    slow = httpx.post(f"{url}/predict", json={"instances": [ROW] * 10_000}, timeout=60)
    slow_s = time.perf_counter() - t0
    alive = httpx.get(f"{url}/healthz", timeout=30)
    # The size limits with a timeout that cannot fire first: parsing 10,001 rows alone can
    # take longer than 0.02 s on a slow machine, and then the answer is (rightly) 504.
    url = deploy(60)
    rows = httpx.post(f"{url}/predict", json={"instances": [ROW] * 10_001}, timeout=60)
    body = httpx.post(f"{url}/predict", content=b'{"instances": [' + b" " * 4_000_001 + b"]}",
                      headers={"content-type": "application/json"}, timeout=60)
    print(f"\nlimits: 10,000-row request with a 0.02 s timeout -> {slow.status_code} in "
          f"{slow_s:.2f} s; healthz after -> {alive.status_code}; 10,001 rows -> "
          f"{rows.status_code}; 4 MB body -> {body.status_code}")
    assert slow.status_code == 504 and "request_timeout_s" in slow.json()["error"]
    assert alive.status_code == 200
    assert rows.status_code == 413 and "10000" in rows.text.replace(",", "")
    assert body.status_code == 413 and "4000000" in body.text
    serve.delete("raypipe-bounded")


def test_a_slow_to_parse_request_does_not_stall_the_replica(trained: dict[str, Any],
                                                            server: str) -> None:
    """Hostile bodies that take seconds to refuse (one row with 400,000 unknown keys, ~5 MB)
    are parsed off the event loop: meanwhile the same replica answers other clients at once."""
    from ray import serve

    from pipelines.serving import build_app

    serve.run(build_app({"model_uri": f"models:/{MODEL}@champion",
                         "tracking_uri": trained["cfg"].tracking_uri, "model_poll_interval_s": 0}),
              name="raypipe-hostile", route_prefix="/hostile")
    url = f"{server}/hostile"
    # Encoded once, here: the test's own interpreter must not be busy while it measures.
    wide = json.dumps({"instances": [{**ROW, **{f"x{i}": 0 for i in range(400_000)}}]}).encode()
    answers: list[tuple[int, float]] = []

    def attack() -> None:
        for _ in range(2):
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/predict", content=wide, timeout=120,
                           headers={"content-type": "application/json"})
            answers.append((r.status_code, time.perf_counter() - t0))

    seen = while_attacked(url, attack, timeout_s=30)
    serve.delete("raypipe-hostile")
    print(f"\nhostile wide rows: answers {answers}; meanwhile {seen.summary()}")
    assert [a[0] for a in answers] == [422, 422]
    assert set(seen.statuses) == {200}
    assert max(seen.latencies) < 1.0
