"""An S3-compatible server on loopback for the tests: moto's server, in its own process.

It runs apart from the test process so that Ray workers, CLI subprocesses and job drivers
reach it the way they reach a real store: through the AWS SDK's standard environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...), which :attr:`S3Server.env` holds. Nothing
in raypipe knows it is talking to moto.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    """A running server: its endpoint and the environment a client needs to use it."""

    endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self, **credentials: str) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=credentials.get("key", self.env["AWS_ACCESS_KEY_ID"]),
                            aws_secret_access_key=credentials.get(
                                "secret", self.env["AWS_SECRET_ACCESS_KEY"]))

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (if new) and return its ``s3://`` URI."""
        client = self.client()
        with suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return f"s3://{name}"


@contextmanager
def s3_server(*, enforce_auth_after: int | None = None) -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port; stop it on exit.

    ``enforce_auth_after``: check credentials and IAM policies after that many requests
    (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``), so that a test can set up a user with limited
    rights and see a real ``AccessDenied``.
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "raypipe-test-key",
           "AWS_SECRET_ACCESS_KEY": "raypipe-test-secret", "AWS_REGION": REGION,
           "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}
    server_env = dict(os.environ)
    if enforce_auth_after is not None:
        server_env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(enforce_auth_after)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], env=server_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # moto's own health endpoint: not an S3 request, so it costs no auth count.
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
                time.sleep(0.2)
        yield S3Server(endpoint, env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
