"""Retries, backoff, Retry-After and the rate limit of the http source, on a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from pipelines.sources import InputError
from pipelines.sources.http_client import JsonFetcher, RateLimiter, RetryPolicy, parse_retry_after


class FakeClock:
    """Time that moves only when slept; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def _fetcher(answers: list[httpx.Response | Exception], clock: FakeClock, retries: int = 5,
             rate: float | None = None, **kw: Any) -> tuple[JsonFetcher, list[float]]:
    """A fetcher over a transport that plays ``answers`` in order; returns request times too."""
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(clock.now())
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.Client(transport=httpx.MockTransport(handler))
    fetcher = JsonFetcher(client, RetryPolicy(retries, 0.5, 8.0), RateLimiter(rate, clock), clock,
                          **kw)
    return fetcher, times


class Body(httpx.SyncByteStream):
    """A streamed response body of ``chunks`` equal chunks; counts the chunks read."""

    def __init__(self, chunks: int, chunk: bytes = b" " * 65_536) -> None:
        self.chunks, self.chunk, self.read = chunks, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield self.chunk


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=10, backoff_s=0.5, backoff_max_s=3.0)
    assert [policy.delay(a) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(0, retry_after=2.5) == 2.5
    assert policy.delay(0, retry_after=99) == 3.0  # capped: a hostile header cannot stall the run


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC), usegmt=True)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(later, now) == pytest.approx(7.0)
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None


def test_retries_5xx_and_429_with_backoff_then_succeeds() -> None:
    clock = FakeClock()
    fetcher, _ = _fetcher([httpx.Response(503, text="busy"), httpx.Response(429),
                           httpx.Response(502), httpx.Response(200, json={"ok": 1})], clock)
    assert fetcher.get("http://api/x", {}, "page 1") == {"ok": 1}
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert fetcher.requests == 4


def test_retry_after_header_is_honoured() -> None:
    clock = FakeClock()
    fetcher, _ = _fetcher([httpx.Response(429, headers={"Retry-After": "4"}),
                           httpx.Response(200, json=[])], clock)
    assert fetcher.get("http://api/x", {}, "page 1") == []
    assert clock.sleeps == [4.0]


def test_connection_errors_and_timeouts_are_retried() -> None:
    clock = FakeClock()
    fetcher, _ = _fetcher([httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                           httpx.Response(200, json=[1])], clock)
    assert fetcher.get("http://api/x", {}, "page 1") == [1]
    assert clock.sleeps == [0.5, 1.0]


def test_gives_up_after_max_retries_naming_the_page() -> None:
    clock = FakeClock()
    fetcher, _ = _fetcher([httpx.Response(500, text="boom")] * 3, clock, retries=2)
    with pytest.raises(InputError, match=r"page 7: HTTP 500: boom \(gave up after 3 attempts\)"):
        fetcher.get("http://api/x", {}, "page 7")
    assert clock.sleeps == [0.5, 1.0]


def test_other_4xx_and_non_json_fail_at_once() -> None:
    clock = FakeClock()
    fetcher, _ = _fetcher([httpx.Response(404, text="no such page")], clock)
    with pytest.raises(InputError, match="page 2: HTTP 404 Not Found: no such page"):
        fetcher.get("http://api/x", {}, "page 2")
    fetcher, _ = _fetcher([httpx.Response(200, text="<html>")], clock)
    with pytest.raises(InputError, match="page 3: the response is not JSON: <html>"):
        fetcher.get("http://api/x", {}, "page 3")
    assert clock.sleeps == []


def test_rate_limit_spaces_requests_evenly() -> None:
    clock = FakeClock()
    fetcher, times = _fetcher([httpx.Response(200, json=[])] * 4, clock, rate=2.0)
    for _ in range(4):
        fetcher.get("http://api/x", {}, "p")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [pytest.approx(0.5)] * 3


def test_rate_limit_counts_retries_too() -> None:
    clock = FakeClock()
    fetcher, times = _fetcher([httpx.Response(503), httpx.Response(200, json=[])], clock,
                              rate=0.5)
    fetcher.get("http://api/x", {}, "p")
    assert times[1] - times[0] == pytest.approx(2.0)  # backoff 0.5 s, then the limiter's 2 s


def test_no_rate_limit_never_sleeps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock)
    for _ in range(100):
        limiter.wait()
    assert clock.sleeps == []


def test_a_url_keeps_its_own_query_string() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, json=[])

    clock = FakeClock()
    fetcher = JsonFetcher(httpx.Client(transport=httpx.MockTransport(handler)), RetryPolicy(),
                          RateLimiter(None, clock), clock)
    fetcher.get("http://api/x?cursor=p2&limit=5", {}, "a next URL")
    fetcher.get("http://api/x?version=2", {"page": "3"}, "a source URL with a query")
    assert sent == ["http://api/x?cursor=p2&limit=5", "http://api/x?version=2&page=3"]


def test_a_response_over_max_response_bytes_is_refused_by_its_content_length() -> None:
    body = Body(1, b"[]")
    big = httpx.Response(200, headers={"Content-Length": str(2**20 + 1)}, stream=body)
    fetcher, _ = _fetcher([big], FakeClock(), max_response_bytes=2**20)
    with pytest.raises(InputError, match=r"page 4: the response is 1048577 bytes "
                       r"\(Content-Length\), over max_response_bytes=1048576; raise"):
        fetcher.get("http://api/x", {}, "page 4")
    assert body.read == 0 and fetcher.requests == 1  # not read, not retried


def test_a_response_is_cut_off_while_streaming_at_max_response_bytes() -> None:
    body = Body(1000)  # 64 MB without a Content-Length
    fetcher, _ = _fetcher([httpx.Response(200, stream=body)], FakeClock(),
                          max_response_bytes=2**20)
    with pytest.raises(InputError, match=r"page 5: the response is over "
                       r"max_response_bytes=1048576 \(stopped reading at 1114112 bytes\)"):
        fetcher.get("http://api/x", {}, "page 5")
    assert body.read == 17  # 16 chunks of 64 KiB fit in 1 MiB, the 17th went over


def test_an_error_body_is_read_only_for_its_excerpt() -> None:
    body = Body(1000, b"x" * 65_536)
    clock = FakeClock()
    fetcher, _ = _fetcher([httpx.Response(503, stream=body), httpx.Response(200, json={"ok": 1})],
                          clock, max_response_bytes=2**20)
    assert fetcher.get("http://api/x", {}, "page 6") == {"ok": 1}
    assert body.read == 1 and clock.sleeps == [0.5]


def test_secret_params_reach_the_server_and_no_message(caplog: pytest.LogCaptureFixture) -> None:
    """params_env values are sent with every request, and neither the error nor httpx's own
    request log line (INFO, full URL) shows them."""
    import logging

    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(404, text="no such page")

    clock = FakeClock()
    fetcher = JsonFetcher(httpx.Client(transport=httpx.MockTransport(handler)), RetryPolicy(),
                          RateLimiter(None, clock), clock, secret_params={"api_key": "k-9f3e"})
    with caplog.at_level(logging.INFO), pytest.raises(InputError) as err:
        fetcher.get("http://api/x", {"page": "2"}, "http source http://api/x?page=2 (page 2)")
    assert sent == ["http://api/x?page=2&api_key=k-9f3e"]
    assert "k-9f3e" not in str(err.value) and "k-9f3e" not in caplog.text
