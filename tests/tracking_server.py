"""A real ``mlflow server`` on a loopback port for the tests, which a test can kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


class TrackingServer:
    """``mlflow server`` over ``backend``; ``extra`` arguments (e.g. ``--artifacts-destination
    s3://...``) and ``env`` (the S3 server's) are passed as a deployment would."""

    def __init__(self, backend: str, port: int, log: Path, extra: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.backend, self.port, self.log = backend, port, log
        self.extra, self.env = list(extra), dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1", *self.extra],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if httpx.get(f"{self.uri}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"mlflow server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
