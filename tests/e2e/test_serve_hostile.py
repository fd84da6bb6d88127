"""Hostile bodies against a running app (security review, issue 19): each is refused with a
4xx, fast, while a well-formed client keeps getting its one-row predictions.

The attacks one by one — an /invocations body of 400,000 column keys (finding 8), a KServe V2
body of 100,000 inputs (finding 1), a Parquet bomb of 30 million rows in 0.2 MB (finding 2,
with the replica's peak memory) — and then a storm of 1,000 generated hostile bodies from a
few threads (tests/e2e/hostile_bodies.py): no answer 5xx, no connection reset, and the
well-formed client's p99 under 1 s throughout. Prints the figures RELIABILITY.md reports.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.hostile_bodies import (
    JSON,
    PARQUET,
    V2_INFER,
    Hostile,
    hostile_requests,
    invocations_keys,
    parquet_body,
    v2_body,
)
from tests.e2e.serving_helpers import (
    MODEL,
    Bystander,
    peak_rss,
    replica_pids,
    serve_app,
    while_attacked,
)

pytestmark = pytest.mark.e2e

APP = "raypipe-storm"
MAX_BODY_BYTES = 10 * 2**20  # serve.max_body_bytes' default
MAX_ROWS = 10_000  # serve.max_request_rows' default


@pytest.fixture(scope="module")
def server(trained: dict[str, Any]) -> Iterator[str]:
    with serve_app(APP, {"model_uri": f"models:/{MODEL}@champion",
                         "tracking_uri": trained["cfg"].tracking_uri,
                         "model_poll_interval_s": 0}) as url:
        httpx.post(f"{url}/invocations", content=parquet_body("row-bomb", 1_000_000, "zstd"),
                   headers=PARQUET, timeout=60)  # the parsers' imports happen before the tests
        yield url


def _attack(url: str, request: Hostile, times: int = 2
            ) -> tuple[list[tuple[int, float]], Bystander]:
    """Send ``request`` ``times`` times while a well-formed client predicts; the answers
    (status, seconds) and what that client saw."""
    answers: list[tuple[int, float]] = []

    def attack() -> None:
        with httpx.Client(timeout=120) as client:
            for _ in range(times):
                t0 = time.perf_counter()
                r = client.post(f"{url}{request.path}", content=request.body,
                                headers=request.headers)
                answers.append((r.status_code, time.perf_counter() - t0))

    seen = while_attacked(url, attack)
    print(f"\n{request.shape} ({len(request.body) / 1e6:.1f} MB): answers "
          + ", ".join(f"{s} in {t:.2f} s" for s, t in answers) + f"; meanwhile {seen.summary()}")
    return answers, seen


def test_invocations_with_400000_column_keys_is_refused_at_once(server: str) -> None:
    """Finding 8: 6.3 MB of `inputs` column keys took 16 s to refuse."""
    answers, seen = _attack(server, Hostile("invocations 400,000 column keys", "/invocations",
                                            JSON, invocations_keys("inputs", 400_000)))
    # 413 from the 400,000 lists counted before decoding; a 400 from the key count otherwise
    assert {s for s, _ in answers} <= {400, 413}
    assert max(t for _, t in answers) < 5
    assert set(seen.statuses) == {200} and seen.quantile(0.99) < 1.0


def test_v2_flood_of_100000_inputs_is_refused_at_once(server: str) -> None:
    """Finding 1: 100,000 unknown inputs did not finish in 60 s."""
    answers, seen = _attack(server, Hostile("v2 100,000 inputs", V2_INFER, JSON,
                                            v2_body("flood", 100_000)))
    assert {s for s, _ in answers} <= {400, 413}
    assert max(t for _, t in answers) < 5
    assert set(seen.statuses) == {200} and seen.quantile(0.99) < 1.0


def test_parquet_bomb_is_refused_from_its_footer_without_growing_the_replica(
        server: str) -> None:
    """Finding 2: 30M rows in 0.2 MB of Parquet were decoded (948 MiB) before the 413."""
    bomb = parquet_body("row-bomb", 30_000_000, "gzip")
    (pid,) = replica_pids(APP).values()
    before = peak_rss(pid)
    answers, seen = _attack(server, Hostile("parquet 30,000,000 rows", "/invocations", PARQUET,
                                            bomb), times=3)
    grown = peak_rss(pid) - before
    print(f"replica peak memory grew by {grown / 2**20:.1f} MiB")
    assert [s for s, _ in answers] == [413, 413, 413]
    assert max(t for _, t in answers) < 1.0
    assert grown < 64 * 2**20
    assert set(seen.statuses) == {200} and seen.quantile(0.99) < 1.0


def test_a_storm_of_1000_hostile_bodies_gets_no_5xx_and_stalls_no_one(server: str) -> None:
    """The review's judged fuzz: 1,000 generated hostile bodies from 3 threads; 0 answers
    5xx, no connection reset, a concurrent well-formed client's p99 under 1 s throughout."""
    t0 = time.perf_counter()
    requests = hostile_requests(1000, seed=19, max_body_bytes=MAX_BODY_BYTES, max_rows=MAX_ROWS)
    built = time.perf_counter() - t0
    by_shape: defaultdict[str, Counter[int]] = defaultdict(Counter)
    slowest: dict[str, float] = defaultdict(float)
    lock = threading.Lock()

    def send(client: httpx.Client, request: Hostile) -> None:
        t0 = time.perf_counter()
        try:
            status = client.post(request.path, content=request.body,
                                 headers=request.headers).status_code
        except httpx.TransportError:
            status = 0
        with lock:
            by_shape[request.shape][status] += 1
            slowest[request.shape] = max(slowest[request.shape], time.perf_counter() - t0)

    def storm() -> None:
        clients = [httpx.Client(base_url=server, timeout=60) for _ in range(3)]
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(send, [clients[i % 3] for i in range(len(requests))], requests))
        for c in clients:
            c.close()

    t0 = time.perf_counter()
    seen = while_attacked(server, storm)
    took = time.perf_counter() - t0
    statuses = Counter(s for c in by_shape.values() for s in c.elements())
    print(f"\nhostile storm: {len(requests)} bodies "
          f"({sum(len(r.body) for r in requests) / 1e6:.0f} MB, built in {built:.1f} s) sent in "
          f"{took:.1f} s, answers "
          f"{dict(sorted(statuses.items()))}; meanwhile {seen.summary()}")
    for shape, counts in sorted(by_shape.items()):
        print(f"  {shape}: {dict(sorted(counts.items()))}, slowest {slowest[shape]:.2f} s")
    assert sum(statuses.values()) == len(requests)
    assert not [s for s in statuses if s >= 500 or s == 0], statuses
    assert set(seen.statuses) == {200}, Counter(seen.statuses)
    assert seen.quantile(0.99) < 1.0
