"""The retrying client of the Serve app, against httpx's in-process mock transport (no server)."""

from __future__ import annotations

import httpx
import pytest

from pipelines.serving.client import RetryPolicy, post_with_retry

FAST = RetryPolicy(attempts=4, backoff_s=0.001, max_backoff_s=0.002, deadline_s=5.0)


def _client(answers: list[int | Exception], seen: list[httpx.Request]) -> httpx.Client:
    """A client whose server gives ``answers`` in turn (a status, or a transport error)."""
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"status": answer})
    return httpx.Client(transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_failure_is_retried_until_it_answers(status: int) -> None:
    seen: list[httpx.Request] = []
    out = post_with_retry(_client([status, status, 200], seen), "http://serve/predict",
                          json={"rows": [{"a": 1}]}, policy=FAST)
    assert out.response.status_code == 200 and out.attempts == 3 and len(seen) == 3
    assert all(r.content == seen[0].content for r in seen)  # the same request every time


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422, 200])
def test_a_client_error_or_success_is_never_retried(status: int) -> None:
    seen: list[httpx.Request] = []
    out = post_with_retry(_client([status, 200], seen), "http://serve/predict", json={},
                          policy=FAST)
    assert out.response.status_code == status and out.attempts == 1 and len(seen) == 1


def test_a_dropped_connection_is_retried() -> None:
    seen: list[httpx.Request] = []
    out = post_with_retry(_client([httpx.ConnectError("reset"), 200], seen), "http://s/p",
                          json={}, policy=FAST)
    assert out.response.status_code == 200 and out.attempts == 2


def test_it_gives_up_after_the_attempts_with_the_last_answer_or_error() -> None:
    seen: list[httpx.Request] = []
    out = post_with_retry(_client([503], seen), "http://s/p", json={}, policy=FAST)
    assert out.response.status_code == 503 and out.attempts == FAST.attempts == len(seen)
    with pytest.raises(httpx.ConnectError):
        post_with_retry(_client([httpx.ConnectError("down")], []), "http://s/p", json={},
                        policy=FAST)


def test_retry_after_is_honoured_up_to_the_cap_and_the_deadline_bounds_the_wait() -> None:
    from pipelines.serving.client import _wait

    policy = RetryPolicy(backoff_s=0.1, max_backoff_s=2.0)
    assert _wait(policy, 1, httpx.Response(503, headers={"Retry-After": "1.5"})) == 1.5
    assert _wait(policy, 1, httpx.Response(503, headers={"Retry-After": "60"})) == 2.0
    assert _wait(policy, 3, None) == pytest.approx(0.4)  # 0.1 doubled twice
    assert _wait(policy, 9, None) == 2.0
    # A Retry-After longer than what is left of the deadline ends the tries at once.
    slow = RetryPolicy(attempts=10, backoff_s=5.0, max_backoff_s=5.0, deadline_s=1.0)
    seen: list[httpx.Request] = []
    out = post_with_retry(_client([503], seen), "http://s/p", json={}, policy=slow)
    assert out.attempts == 1 and len(seen) == 1
