"""Real servers for source tests: a throwaway PostgreSQL and a paginated JSON API on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["PG_PASSWORD", "PG_PASSWORD_ENV", "PagedApi", "Postgres", "free_port",
           "postgres_server", "serve_api"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- PostgreSQL

# Known before any server starts: Ray's workers read a SQL source's password from their own
# environment, which they inherit from the local Ray instance when it starts, so the session
# fixture exports it before ray.init (a test's monkeypatch.setenv reaches only the driver).
PG_PASSWORD = "raypipe-test-pw"
PG_PASSWORD_ENV = "RAYPIPE_TEST_PGPASSWORD"


@dataclass(frozen=True)
class Postgres:
    """A running server: connect as ``user`` with ``password`` over TCP on 127.0.0.1."""

    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"


def _pg_bindir() -> Path:
    explicit = os.environ.get("RAYPIPE_PG_BINDIR")
    if explicit:
        return Path(explicit)
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    return Path("/usr/lib/postgresql/15/bin")


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """initdb into a fresh folder, start on a free port, stop and delete at the end.

    initdb and postgres refuse to run as root, so as root the server runs as ``nobody`` in a
    folder handed to it; as any other user it runs as that user. Password auth (scram) is on,
    so the tests prove the source's password_env path for real.
    """
    bindir = _pg_bindir()
    if not (bindir / "initdb").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {bindir}; install PostgreSQL or "
                           "set RAYPIPE_PG_BINDIR")
    root = Path(tempfile.mkdtemp(prefix="raypipe-pg-"))
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "nobody", "--"] if as_root else []
    password, port = PG_PASSWORD, free_port()
    (root / "pw").write_text(password + "\n")
    if as_root:
        shutil.chown(root, "nobody")
        shutil.chown(root / "pw", "nobody")
    data, log = root / "data", root / "server.log"

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "raypipe", f"--pwfile={root / 'pw'}",
            "-A", "scram-sha-256", "-E", "UTF8", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    except subprocess.CalledProcessError as err:
        detail = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {err.stderr!r} {detail}") from err
    try:
        yield Postgres(port=port, user="raypipe", password=password)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- JSON API


@dataclass
class PagedApi:
    """Serves ``records`` at /page, /offset, /cursor and /links; plays scripted failures first.

    ``faults`` maps a request (``"/page?page=2"``) to the statuses it answers before it
    succeeds; 429 answers carry ``Retry-After``. ``hits`` counts requests per such key.
    /links is cursor pagination whose ``next`` is a full URL with its own query string.
    """

    records: list[dict[str, Any]]
    faults: dict[str, list[int]] = field(default_factory=dict)
    token: str | None = None  # when set, requests without `Authorization: Bearer <token>` get 401
    claimed_total: int | None = None  # /page states this total instead of the true one
    next_base: str | None = None  # /links points its next URLs here instead of at itself
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, query: dict[str, str], authorization: str | None = None,
               host: str = "127.0.0.1") -> tuple[int, dict[str, str], Any]:
        key = path + ("?" + "&".join(f"{k}={query[k]}" for k in ("page", "offset", "cursor")
                                      if k in query) if query else "")
        with self.lock:
            self.hits[key] += 1
            if self.token is not None and authorization != f"Bearer {self.token}":
                return 401, {}, {"error": "missing or wrong token"}
            pending = self.faults.get(key)
            if pending:
                status = pending.pop(0)
                return status, {"Retry-After": "0.05"} if status == 429 else {}, {"error": status}
        n = len(self.records)
        if path == "/page":
            size, page = int(query.get("per_page", 100)), int(query.get("page", 1))
            total = n if self.claimed_total is None else self.claimed_total
            return 200, {}, {"data": self.records[(page - 1) * size: page * size],
                             "meta": {"total": total}}
        if path == "/offset":
            off, size = int(query.get("offset", 0)), int(query.get("limit", 100))
            return 200, {}, {"results": self.records[off: off + size]}
        if path == "/cursor":
            start, size = int(query.get("cursor", 0)), 250
            nxt = str(start + size) if start + size < n else None
            return 200, {}, {"items": self.records[start: start + size], "next": nxt}
        if path == "/links":
            start, size = int(query.get("cursor", 0)), int(query.get("limit", 250))
            base = self.next_base or f"http://{host}"
            link = (f"{base}/links?cursor={start + size}&limit={size}" if start + size < n
                    else None)
            return 200, {}, {"items": self.records[start: start + size], "next": link}
        return 404, {}, {"error": "no such endpoint"}


@contextmanager
def serve_api(api: PagedApi) -> Iterator[str]:
    """Serve ``api`` on 127.0.0.1 in a thread; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            status, headers, body = api.answer(url.path, query,
                                               self.headers.get("Authorization"),
                                               self.headers.get("Host", "127.0.0.1"))
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
