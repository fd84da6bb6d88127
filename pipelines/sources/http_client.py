"""HTTP requests for the http source: timeouts, retries with backoff, Retry-After, rate limit.

The clock is injected so that the retry and rate-limit arithmetic is tested without waiting.
"""

from __future__ import annotations

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


class JsonFetcher:
    """GETs JSON documents with retries on 429, 5xx, timeouts and connection errors.

    Other 4xx answers and bodies that are not JSON fail at once: repeating them cannot help.
    Every error names the request (``label``: URL and page).
    """

    def __init__(self, client: httpx.Client, policy: RetryPolicy, limiter: RateLimiter,
                 clock: Clock) -> None:
        self.client = client
        self.policy = policy
        self.limiter = limiter
        self.clock = clock
        self.requests = 0

    def get(self, url: str, params: Mapping[str, str], label: str) -> Any:
        """The decoded JSON body of ``GET url?params``; raises :class:`InputError` naming ``label``."""
        import httpx

        for attempt in range(self.policy.max_retries + 1):
            self.limiter.wait()
            self.requests += 1
            retry_after: float | None = None
            try:
                resp = self.client.get(url, params=dict(params))
            except (httpx.TimeoutException, httpx.TransportError) as err:
                failure = f"{type(err).__name__}: {err}"
            else:
                if resp.status_code == 429 or resp.status_code >= 500:
                    failure = f"HTTP {resp.status_code}: {_excerpt(resp.text)}"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"),
                                                    self.clock.wall())
                elif resp.status_code >= 400:
                    raise InputError(f"{label}: HTTP {resp.status_code} "
                                     f"{resp.reason_phrase}: {_excerpt(resp.text)}")
                else:
                    try:
                        return resp.json()
                    except ValueError as err:
                        raise InputError(f"{label}: the response is not JSON: "
                                         f"{_excerpt(resp.text)}") from err
            if attempt == self.policy.max_retries:
                raise InputError(f"{label}: {failure} (gave up after "
                                 f"{self.policy.max_retries + 1} attempts)")
            delay = self.policy.delay(attempt, retry_after)
            logger.warning("%s: %s; retry %d/%d in %.2fs", label, failure, attempt + 1,
                           self.policy.max_retries, delay)
            self.clock.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises
