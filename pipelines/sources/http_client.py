"""HTTP requests for the http source: timeouts, retries with backoff, Retry-After, rate limit,
a cap on response size, and URLs fit to print.

The clock is injected so that the retry and rate-limit arithmetic is tested without waiting.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

from pipelines.sources._errors import InputError

if TYPE_CHECKING:
    import httpx

__all__ = ["Clock", "JsonFetcher", "RateLimiter", "RetryPolicy", "SystemClock",
           "parse_retry_after"]

logger = logging.getLogger(__name__)

# Bytes of an error response read for its excerpt; the rest is never read.
_EXCERPT_BYTES = 4096


class Clock(Protocol):
    """Monotonic time and sleeping; the real one is :class:`SystemClock`."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wall(self) -> float: ...


class SystemClock:
    """The process's clocks: monotonic for intervals, wall time for HTTP dates."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wall(self) -> float:
        return time.time()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``backoff_s * 2**attempt``, capped; Retry-After wins when given."""

    max_retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max_s)
        return min(self.backoff_s * 2.0 ** attempt, self.backoff_max_s)


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(text).timestamp() - now_wall, 0.0)
    except (TypeError, ValueError):
        logger.warning("ignoring unparseable Retry-After header %r", value)
        return None


class RateLimiter:
    """At most ``rate`` requests a second: each request starts 1/rate after the previous one.

    Spacing requests evenly (rather than a bursty token bucket) is what APIs with a
    requests-per-second quota expect; ``rate=None`` never waits.
    """

    def __init__(self, rate: float | None, clock: Clock) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self._next = -math.inf

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock.now()
        if now < self._next:
            self.clock.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _text(resp: httpx.Response, data: bytes) -> str:
    return data.decode(resp.encoding or "utf-8", errors="replace")


def _head(resp: httpx.Response, limit: int) -> bytes:
    """At most about ``limit`` bytes of the body: an error answer is quoted, not kept."""
    data = b""
    for chunk in resp.iter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit]


@dataclass(frozen=True)
class _Retry:
    """An attempt that may succeed if repeated: what went wrong, and the server's Retry-After."""

    failure: str
    retry_after: float | None = None


class JsonFetcher:
    """GETs JSON documents with retries on 429, 5xx, timeouts and connection errors.

    Other 4xx answers, bodies that are not JSON and bodies over ``max_response_bytes`` fail at
    once: repeating them cannot help. Every error names the request (``label``: URL and page).
    ``max_response_bytes=None`` accepts a body of any size.
    """

    def __init__(self, client: httpx.Client, policy: RetryPolicy, limiter: RateLimiter,
                 clock: Clock, max_response_bytes: int | None = None,
                 secret_params: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.policy = policy
        self.limiter = limiter
        self.clock = clock
        self.max_response_bytes = max_response_bytes
        # Added to every request here, below the labels, so that no message can show them.
        self.secret_params = dict(secret_params or {})
        # httpx logs each request's full URL, query included, at INFO: a key sent as a query
        # parameter would reach any log configured at INFO (the ray_jobs entrypoints are).
        logging.getLogger("httpx").setLevel(max(logging.WARNING,
                                                logging.getLogger("httpx").level))
        self.requests = 0

    def get(self, url: str, params: Mapping[str, str], label: str) -> Any:
        """The decoded JSON body of ``GET url?params``; raises :class:`InputError` naming ``label``.

        ``params`` are added to the URL's own query string: httpx replaces it when given
        ``params`` (even ``{}``), which would drop a next URL's cursor.
        """
        import httpx

        target = httpx.URL(url).copy_merge_params({**params, **self.secret_params})
        for attempt in range(self.policy.max_retries + 1):
            self.limiter.wait()
            self.requests += 1
            try:
                outcome = self._attempt(target, label)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                outcome = _Retry(f"{type(err).__name__}: {err}")
            if not isinstance(outcome, _Retry):
                return outcome
            if attempt == self.policy.max_retries:
                raise InputError(f"{label}: {outcome.failure} (gave up after "
                                 f"{self.policy.max_retries + 1} attempts)")
            delay = self.policy.delay(attempt, outcome.retry_after)
            logger.warning("%s: %s; retry %d/%d in %.2fs", label, outcome.failure, attempt + 1,
                           self.policy.max_retries, delay)
            self.clock.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _attempt(self, target: httpx.URL, label: str) -> Any:
        """One request: the decoded body, a :class:`_Retry`, or an :class:`InputError`."""
        with self.client.stream("GET", target) as resp:
            if resp.status_code == 429 or resp.status_code >= 500:
                excerpt = _excerpt(_text(resp, _head(resp, _EXCERPT_BYTES)))
                return _Retry(f"HTTP {resp.status_code}: {excerpt}",
                              parse_retry_after(resp.headers.get("Retry-After"), self.clock.wall()))
            if resp.status_code >= 400:
                excerpt = _excerpt(_text(resp, _head(resp, _EXCERPT_BYTES)))
                raise InputError(f"{label}: HTTP {resp.status_code} {resp.reason_phrase}: "
                                 f"{excerpt}")
            data = self._body(resp, label)
        try:
            return json.loads(data)
        except ValueError as err:
            raise InputError(f"{label}: the response is not JSON: "
                             f"{_excerpt(_text(resp, data[:_EXCERPT_BYTES]))}") from err

    def _body(self, resp: httpx.Response, label: str) -> bytes:
        """The whole body, refused past ``max_response_bytes`` before it is all in memory.

        Content-Length is checked first; the bytes are counted too, since the header may be
        missing (chunked), false, or of a compressed body that inflates past the cap.
        """
        cap = self.max_response_bytes
        if cap is None:
            return resp.read()
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise InputError(f"{label}: the response is {int(declared)} bytes (Content-Length), "
                             f"over max_response_bytes={cap}; raise max_response_bytes if the "
                             "API really answers that much")
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise InputError(f"{label}: the response is over max_response_bytes={cap} "
                                 f"(stopped reading at {size} bytes); raise max_response_bytes "
                                 "if the API really answers that much")
            chunks.append(chunk)
        return b"".join(chunks)
