"""A small HTTP client of the Serve app that retries idempotent predictions.

Predictions are pure functions of the rows and the served model version, so sending the same
request again is safe. The retry policy (also in RELIABILITY.md):

- retried: connection errors and timeouts (a replica or proxy died mid-request), and the
  answers 500, 502, 503 and 504 (a replica that died under a request, overload, a proxy with
  no live replica yet);
- never retried: any 4xx (the request itself is wrong, or the token is), and 2xx/3xx;
- wait: the server's ``Retry-After`` when it sends one, else exponential backoff from
  ``backoff_s`` doubling up to ``max_backoff_s``;
- give up: after ``attempts`` tries or ``deadline_s`` seconds, returning the last answer (or
  raising the last transport error), so a caller never waits without bound.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["RETRIED_STATUSES", "RetryPolicy", "post_with_retry"]

logger = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({500, 502, 503, 504})
"""Answers worth another try of an idempotent request: the server, not the request, failed."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a client retries an idempotent prediction."""

    attempts: int = 8
    """Tries in all, the first included."""
    backoff_s: float = 0.1
    """Wait before the second try; doubled for each further try."""
    max_backoff_s: float = 2.0
    """Longest wait between two tries (also caps a server's Retry-After)."""
    deadline_s: float = 30.0
    """No try starts later than this after the first."""


@dataclass
class RetryOutcome:
    """The final answer and what it took to get it."""

    response: httpx.Response
    attempts: int


def _wait(policy: RetryPolicy, attempt: int, response: httpx.Response | None) -> float:
    after = response.headers.get("retry-after") if response is not None else None
    if after is not None:
        try:
            return min(float(after), policy.max_backoff_s)
        except ValueError:  # an HTTP date: fall back to backoff
            pass
    return float(min(policy.backoff_s * 2 ** (attempt - 1), policy.max_backoff_s))


def post_with_retry(client: httpx.Client, url: str, *, json: Any,
                    headers: dict[str, str] | None = None,
                    policy: RetryPolicy = RetryPolicy()) -> RetryOutcome:
    """POST an idempotent prediction request, retrying as :class:`RetryPolicy` says.

    Raises:
        httpx.TransportError: the last try failed without an answer.
    """
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        response: httpx.Response | None = None
        error: httpx.TransportError | None = None
        try:
            response = client.post(url, json=json, headers=headers)
        except httpx.TransportError as err:
            error = err
        if response is not None and response.status_code not in RETRIED_STATUSES:
            return RetryOutcome(response, attempt)
        wait = _wait(policy, attempt, response)
        if attempt >= policy.attempts or time.monotonic() - start + wait > policy.deadline_s:
            if response is not None:
                return RetryOutcome(response, attempt)
            assert error is not None
            raise error
        logger.debug("retrying %s in %.2f s after %s", url, wait,
                     response.status_code if response is not None else type(error).__name__)
        time.sleep(wait)
