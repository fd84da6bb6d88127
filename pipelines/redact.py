"""Strip credentials from text before it leaves the process: logs, probes, errors, MLflow.

Secrets reach messages by accident, inside URLs that a library quotes in its error: a
tracking URI with ``user:password@``, a presigned object-store URL with its signature, an
API URL with ``?api_key=``. :func:`redact` rewrites those parts of any text and leaves the
rest readable, so a message still says which host or file failed. :func:`redact_url` is
stricter, for a URL raypipe prints itself: every query value goes, not only the ones whose
name looks secret, since an API may call its key anything.

Every pattern is linear in the text (no nested quantifiers): redaction runs on error texts
of any size, some of them written by whoever controls a remote server.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["MASK", "SENSITIVE_NAMES", "RedactingFilter", "keep_mlflow_logs_with_ours", "redact",
           "redact_config", "redact_url", "url_label"]

MASK = "***"

SENSITIVE_NAMES = frozenset({
    "password", "passwd", "pwd", "pass", "secret", "client_secret", "token", "access_token",
    "refresh_token", "id_token", "api_key", "apikey", "api-key", "key", "auth", "authorization",
    "credential", "credentials", "signature", "sig", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential", "sas", "session_token",
    "x-api-key", "api-token", "private-token", "cookie", "proxy-authorization",
})
"""Query-parameter and header names whose values are secrets (compared lower-cased)."""

# scheme://user:PASSWORD@ (the password may hold "/", which some drivers accept unescaped)
# or scheme://token@. Bounded repeats: at most a few thousand steps per "://".
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,30}://)"
                       r"(?:(?P<user>[^/?#@:\s]{0,256}):[^@\s]{1,1024}|(?P<token>[^/?#@:\s]{1,1024}))@")
# name=value in a query string (after ? or &, or ; as some servers use).
_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[A-Za-z0-9_.\-]{1,64})=(?P<value>[^&#\s\"'<>]*)")
_BEARER = re.compile(r"(?i)\b(?P<kind>bearer|basic|token)\s+(?P<value>[A-Za-z0-9._~+/=\-]{8,})")


def _userinfo(match: re.Match[str]) -> str:
    # A user name alone may be a token (https://TOKEN@host): mask it unless a password follows.
    if match["token"] is not None:
        return f"{match['scheme']}{MASK}@"
    return f"{match['scheme']}{match['user']}:{MASK}@"


def _param(match: re.Match[str]) -> str:
    if match["name"].lower() in SENSITIVE_NAMES and match["value"]:
        return f"{match['lead']}{match['name']}={MASK}"
    return match.group(0)


def redact(text: str) -> str:
    """``text`` with URL passwords, secret query values and bearer tokens replaced by ``***``."""
    text = _USERINFO.sub(_userinfo, text)
    text = _PARAM.sub(_param, text)
    return _BEARER.sub(lambda m: f"{m['kind']} {MASK}", text)


def redact_url(url: str) -> str:
    """``url`` fit for an error message or a log: no userinfo, query values as ``***``.

    API keys travel as userinfo or query parameters (``?api_key=...``, signed next URLs);
    scheme, host, path and the parameter names are enough to tell which request failed.
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{k}={MASK}" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    if parts.query and not query:
        query = MASK
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_config(value: Any) -> Any:
    """A copy of a config dump fit to log (MLflow's ``config.yaml``, tags, reports).

    Values under a secret-looking key (``headers: {Authorization: ...}``, ``params: {api_key:
    ...}``) become ``***`` whatever they hold; every other string goes through :func:`redact`,
    so a URL password or a signed query in ``source.url``, ``tracking.uri`` or a webhook is
    masked too. Keys, numbers and the shape are kept: the logged config still says what ran.
    """
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and k.lower() in SENSITIVE_NAMES
                    and isinstance(v, str) and v else redact_config(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_config(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def url_label(url: str) -> str:
    """Only the scheme and host of ``url``: for a URL that is a secret as a whole (a Slack or
    Teams webhook carries its key in the path), so neither a log nor a report may show more."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}/{MASK}" if parts.path.strip("/") or parts.query else \
        f"{parts.scheme}://{host}"


def keep_mlflow_logs_with_ours() -> None:
    """Let MLflow's log records reach the process's (redacting) handlers; call before MLflow
    is imported.

    Imported, MLflow gives its loggers a handler of its own (no redaction) and stops them
    propagating: a credential in a URL it logs was printed unmasked by the CLI and by every
    ``ray_jobs/`` driver. Left unconfigured, its records go through the root logger's
    handlers like any library's. A value the user set wins.
    """
    import os

    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in every record's message (see :func:`redact`).

    On the handler, not on a logger: a logger's filters do not see the records its children
    propagate, and secrets arrive through library loggers (httpx, urllib3, MLflow) raypipe
    does not own. The formatted message replaces ``msg`` and ``args`` only when it changes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
