"""What every wire protocol of the Serve app shares: the refusal type, content and size checks,
bearer-token auth and the conversion of missing values for JSON answers.

Plain Python over bytes and headers, testable without Ray or HTTP. A request that cannot be
scored raises :class:`RequestError` with the HTTP status and a message naming the offending
field; nothing a client sends may reach the model unvalidated, so bad input is always a 4xx,
never a 5xx.
"""

from __future__ import annotations

import hmac
import math
import os
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_ERRORS",
    "RequestError",
    "bearer_ok",
    "check_content_type",
    "check_json_containers",
    "check_size",
    "field_path",
    "nan_to_none",
    "read_token",
]

MAX_ERRORS = 50
"""Field errors listed in one answer; the count says how many there were."""


class RequestError(Exception):
    """A request the server refuses: HTTP status, a message, and the offending fields."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out




def check_content_type(header: str | None, accepted: tuple[str, ...] = ("application/json",)
                       ) -> str:
    """The media type of the request; 415 unless it is one of ``accepted``.

    A missing header is taken as the first accepted type (plain `curl --data-binary`).
    """
    if not header:
        return accepted[0]
    parts = [p.strip() for p in header.split(";")]
    media = parts[0].lower()
    params = dict(p.partition("=")[::2] for p in parts[1:] if p)
    charset = params.get("charset", "utf-8").strip('"').lower()
    if media not in accepted and not (media.endswith("+json") and "application/json" in accepted):
        raise RequestError(415, f"content type {media!r} is not supported; send "
                                f"{' or '.join(accepted)}")
    if charset not in ("utf-8", "utf8"):
        raise RequestError(415, f"charset {charset!r} is not supported; send UTF-8")
    return media


def check_size(raw: bytes, max_bytes: int) -> None:
    if not raw:
        raise RequestError(400, "empty request body")
    if len(raw) > max_bytes:
        raise RequestError(413, f"request body over {max_bytes} bytes")


_CONTAINER_CHECK_BYTES = 64 * 1024


def check_json_containers(raw: bytes, max_rows: int, columns: int) -> None:
    """413 when a JSON body holds more arrays and objects than a request within the limits can.

    Decoding small containers is the costliest JSON per byte, and the decoder holds the
    replica's interpreter lock throughout: 10 MB of ``[0],`` (2.6 million lists) took 1-3 s
    before any check could look at the rows. A request of ``max_rows`` rows of ``columns``
    columns needs at most one container per value plus a few (V2's ``[[v], [v]]`` data), so
    the brackets are counted first, at memchr speed; brackets inside strings count too, which
    only errs towards refusing a body of ``max_rows x columns`` bracketed texts. Bodies up to
    64 KiB decode in a millisecond whatever their shape: the parsers name their problems.
    """
    if len(raw) <= _CONTAINER_CHECK_BYTES:
        return
    limit = (max_rows + 2) * (columns + 2) + 64
    count = raw.count(b"[") + raw.count(b"{")
    if count > limit:
        raise RequestError(413, f"the body holds {count} JSON arrays and objects, over the "
                                f"{limit} that {max_rows} rows of {columns} columns can need")


def read_token(env_name: str | None, file: str | None) -> str | None:
    """The bearer token configured for the replicas, or None when auth is off.

    Raises ``ValueError`` when auth is configured but the token is missing or empty, so a
    misconfigured server refuses to start rather than serve without auth.
    """
    if env_name:
        token = os.environ.get(env_name, "").strip()
        if not token:
            raise ValueError(f"serve.auth_token_env: environment variable {env_name} is unset "
                             "or empty on the replica")
        return token
    if file:
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"serve.auth_token_file: {file} is not a readable file")
        token = path.read_text().strip()
        if not token:
            raise ValueError(f"serve.auth_token_file: {file} is empty")
        return token
    return None


def bearer_ok(header: str | None, token: str | None) -> bool:
    """True when auth is off or ``Authorization: Bearer <token>`` matches (constant time)."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def nan_to_none(values: list[Any]) -> list[Any]:
    """The values with NaN and infinities as None: JSON has no such numbers."""
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]


def field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a dotted field name (``instances.0.plan``)."""
    return ".".join(str(p) for p in loc)
