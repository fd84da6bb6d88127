"""Real Ray clusters on this machine for the cluster tests, isolated from everything else.

Each node is a separate ``ray start --block`` (its own raylet, resources and temp dir) in its
own process group, on free ports, with token authentication from a file of the test's own.
Teardown signals exactly those process groups: never ``ray stop``, which would kill every Ray
process on the machine, the test session's shared instance included.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Environment that would point a subprocess at another Ray instance, MLflow store or token,
# or declare shared storage the test did not declare itself.
_FOREIGN_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_AUTH_TOKEN",
                "RAYPIPE_SHARED_DIRS")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus other Ray/MLflow addresses, plus a private auth token."""
    token = root / "auth_token"
    if not token.exists():
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env.update({
        "RAY_AUTH_MODE": "token",             # Ray 2.60 defaults to token auth; make it explicit
        "RAY_AUTH_TOKEN_PATH": str(token),    # ours, not ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


@dataclass
class LocalCluster:
    """Handles to a running cluster: addresses, environment for clients, node processes."""

    root: Path
    env: dict[str, str]
    gcs_address: str
    dashboard_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ray_cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the ``ray`` CLI against this cluster's environment (token included)."""
        return subprocess.run(["ray", *args], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def state(self, resource: str, *filters: str) -> list[dict[str, Any]]:
        """``ray list RESOURCE --detail`` as JSON (nodes, actors, tasks, ...), dead ones included."""
        args = ["list", resource, "--address", self.dashboard_url, "--detail", "--format=json",
                "--limit=10000"]
        for f in filters:
            args += ["--filter", f]
        out = self.ray_cli(*args)
        if out.returncode != 0:
            raise RuntimeError(f"ray list {resource} failed: {out.stderr[-2000:]}")
        if out.stdout.strip().startswith("No resource"):
            return []
        return list(json.loads(out.stdout))

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.state("nodes") if n["state"] == "ALIVE"]


def start_node(root: Path, name: str, args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``ray start --block ARGS`` in a new process group; its output goes to ROOT/NAME.log.

    The group id is also appended to ROOT/pgids, so that :func:`kill_leftovers` can end the
    node even when the process that started it was killed before it could.
    """
    log = (root / f"{name}.log").open("wb")
    process = subprocess.Popen(["ray", "start", "--block", "--disable-usage-stats", *args],
                               env=dict(env), cwd=root, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    with (root / "pgids").open("a") as f:
        f.write(f"{process.pid}\n")
    return process


def kill_leftovers(root: Path) -> None:
    """SIGKILL the process groups :func:`start_node` started under ``root`` that still run.

    A group is only signalled while its leader's command line still names ``root``, so a
    recycled process id is never hit.
    """
    pgids = root / "pgids"
    for line in pgids.read_text().split() if pgids.exists() else []:
        try:
            cmdline = Path(f"/proc/{line}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # already gone
        if str(root) in cmdline:
            with suppress(ProcessLookupError):
                os.killpg(int(line), signal.SIGKILL)


def head_args(root: Path, num_cpus: float, gcs_port: int, dashboard_port: int) -> list[str]:
    """Flags for a head node whose every port is free and private to this cluster."""
    return [
        "--head", f"--num-cpus={num_cpus}", f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        "--min-worker-port=0", "--max-worker-port=0", f"--temp-dir={root / 'ray-head'}",
    ]


def stop_nodes(processes: Sequence[subprocess.Popen[bytes]], grace_s: float = 10) -> None:
    """SIGTERM each node's process group, then SIGKILL whatever is left of those groups."""
    for p in reversed(processes):  # workers first, the head last
        with suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in processes:
        with suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    for p in processes:  # workers and agents the raylet started share the group
        with suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # the cluster may not answer yet
            last_error = err
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


@contextmanager
def local_cluster(root: Path, cpus_per_node: Sequence[float], env_extra: Mapping[str, str] | None = None,
                  timeout: float = 90) -> Iterator[LocalCluster]:
    """A head plus ``len(cpus_per_node) - 1`` workers joined with ``ray start --address``."""
    root.mkdir(parents=True, exist_ok=True)
    env = isolated_env(root, env_extra)
    gcs_port, dashboard_port = free_port(), free_port()
    cluster = LocalCluster(root=root, env=env, gcs_address=f"127.0.0.1:{gcs_port}",
                           dashboard_url=f"http://127.0.0.1:{dashboard_port}")
    try:
        cluster.processes.append(
            start_node(root, "head", head_args(root, cpus_per_node[0], gcs_port, dashboard_port), env))
        wait_until(lambda: len(cluster.alive_nodes()) == 1, timeout, "the head node")
        for i, cpus in enumerate(cpus_per_node[1:], start=1):
            cluster.processes.append(start_node(root, f"worker{i}", [
                f"--address={cluster.gcs_address}", f"--num-cpus={cpus}",
                f"--dashboard-agent-listen-port={free_port()}", "--min-worker-port=0",
                "--max-worker-port=0", f"--temp-dir={root / f'ray-worker{i}'}",
            ], env))
        wait_until(lambda: len(cluster.alive_nodes()) == len(cpus_per_node), timeout,
                   f"{len(cpus_per_node)} alive nodes")
        yield cluster
    finally:
        stop_nodes(cluster.processes)
