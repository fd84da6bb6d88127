"""A two-node Ray cluster on this machine whose nodes share no node-local folders.

:mod:`tests.cluster.local_cluster` starts real nodes, but they all see one disk, so a test on
it cannot show that a run needs nothing but its object store and tracking server. Here each
node's ``ray start --block`` runs in a mount namespace of its own (``unshare --mount
--propagation private``, as root), and a shell prologue run in that namespace, before it
``exec``\\ s into ``ray start``, mounts per node:

- every *private dir* the test names: a folder of the node's own (bind mounted from
  ``ROOT/nodes/NODE/private/I``), so the same path holds different files on each node;
- Ray's temp dir ``ROOT/ray``: same path on both nodes, as on real machines (``/tmp/ray``),
  different contents: session dirs, logs, Unix sockets, unpacked ``working_dir`` packages;
- ``/dev/shm``: an empty tmpfs, so the object store and any shared-memory file is per node;
- then an empty tmpfs over ``ROOT/nodes``, so no node can reach any node's backing folders
  (the bind mounts made before it stay in place). The test process, in the machine's own
  namespace, reads a node's files there: :meth:`IsolatedCluster.node_path`.

Every process a node starts (raylet, GCS, dashboard and its agents, workers, a job's driver)
inherits the node's namespace. Without ``--fork`` ``unshare`` and the shell ``exec``, so the
process :func:`~tests.cluster.local_cluster.start_node`'s way of starting and stopping nodes
relies on (the leader of the node's process group) is still ``ray start`` itself.

Shared, as on one machine and unlike real nodes: the rest of the file system (the repo, the
virtualenv, ``/tmp`` outside the private dirs, ``ROOT`` outside ``ROOT/nodes``, the home
folder), the network namespace (both nodes are on 127.0.0.1, so ports and abstract Unix
sockets are shared), process ids and users. Node-local *paths* are what is isolated.

A ``ray job submit`` driver runs on the head (Ray's job manager pins it there unless the job
asks for entrypoint resources), so it sees the head's private dirs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.local_cluster import (
    LocalCluster,
    free_port,
    head_args,
    isolated_env,
    stop_nodes,
    wait_until,
)

HEAD, WORKER = "head", "worker1"
_UNSHARE = ("unshare", "--mount", "--propagation", "private", "--")
# Ray 2.60 drains a node for up to 30 s on SIGTERM; these nodes and their files are thrown
# away, so teardown skips that (3 s instead of stop_nodes' full 10 s grace). env_extra wins.
_NODE_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


def isolation_unavailable() -> str | None:
    """Why this machine cannot isolate nodes (a reason for ``pytest.skip``), or None if it can."""
    if os.geteuid() != 0:
        return "mounting in a private mount namespace needs root (unshare --mount)"
    if shutil.which("unshare") is None:
        return "util-linux's unshare is not installed"
    probe = subprocess.run([*_UNSHARE, "sh", "-c", "mount -t tmpfs raypipe-probe /dev/shm"],
                           capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"cannot mount in a private mount namespace: {probe.stderr.strip()}"
    return None


@dataclass
class IsolatedCluster(LocalCluster):
    """A :class:`LocalCluster` whose two nodes each see their own copy of ``private_dirs``.

    ``node_ids`` maps ``"head"`` and ``"worker1"`` to Ray node ids, to pin tasks to a node
    (``NodeAffinitySchedulingStrategy``); ``ray_temp_dir`` is each node's Ray temp dir (the
    same path on both, different contents).
    """

    private_dirs: tuple[Path, ...] = ()
    ray_temp_dir: Path = Path()
    node_ids: dict[str, str] = field(default_factory=dict)

    def node_path(self, node: str, path: str | Path) -> Path:
        """Where the test process finds what ``node`` sees at ``path`` (a private dir or below it)."""
        path = Path(path)
        mounts = [*self.private_dirs, self.ray_temp_dir]
        for i, mount in enumerate(mounts):
            if path == mount or mount in path.parents:
                backing = _backing(self.root, node, i, len(self.private_dirs))
                return backing / path.relative_to(mount)
        raise ValueError(f"{path} is under none of the node-local folders {mounts}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _backing(root: Path, node: str, index: int, n_private: int) -> Path:
    return root / "nodes" / node / ("ray" if index == n_private else f"private/{index}")


def _prologue(root: Path, node: str, private_dirs: Sequence[Path], temp_dir: Path) -> str:
    """Shell run in the node's new mount namespace before it becomes ``ray start``."""
    q = shlex.quote
    lines = ["set -e"]
    for i, target in enumerate([*private_dirs, temp_dir]):
        lines.append(f"mount --bind {q(str(_backing(root, node, i, len(private_dirs))))} {q(str(target))}")
    lines.append("mount -t tmpfs -o mode=1777 raypipe-shm /dev/shm")
    lines.append(f"mount -t tmpfs -o size=1m,mode=0755 raypipe-hidden {q(str(root / 'nodes'))}")
    return "\n".join(lines)


def start_isolated_node(root: Path, node: str, private_dirs: Sequence[Path], temp_dir: Path,
                        args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``ray start --block ARGS`` in its own process group and mount namespace; log in ROOT/NODE.log.

    Like :func:`~tests.cluster.local_cluster.start_node`, the group id is appended to
    ROOT/pgids for :func:`~tests.cluster.local_cluster.kill_leftovers`.
    """
    for i in range(len(private_dirs) + 1):
        _backing(root, node, i, len(private_dirs)).mkdir(parents=True, exist_ok=True)
    ray_start = shlex.join(["ray", "start", "--block", "--disable-usage-stats", *args])
    script = f"{_prologue(root, node, private_dirs, temp_dir)}\nexec {ray_start}\n"
    log = (root / f"{node}.log").open("wb")
    process = subprocess.Popen([*_UNSHARE, "sh", "-c", script], env=dict(env), cwd=root,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with (root / "pgids").open("a") as f:
        f.write(f"{process.pid}\n")
    return process


@contextmanager
def isolated_two_node_cluster(root: Path, private_dirs: Sequence[str | Path] = (), head_cpus: float = 1,
                              worker_cpus: float = 1, env_extra: Mapping[str, str] | None = None,
                              timeout: float = 90) -> Iterator[IsolatedCluster]:
    """A head and one worker node, each with its own empty copy of ``private_dirs``.

    ``root`` must be short (Ray's Unix socket paths under ``ROOT/ray`` must stay below 107
    bytes) and must not be one of, or lie under one of, ``private_dirs``. Each private dir is
    created here if missing; outside the nodes (in the test process) it stays as it was.
    On exit the nodes' process groups are stopped; the caller removes ``root`` (after
    :func:`~tests.cluster.local_cluster.kill_leftovers`), the node-local files with it.
    Yields once both nodes are alive, with ``node_ids`` filled in.
    """
    root = root.resolve()
    private = tuple(Path(d).resolve() for d in private_dirs)
    for d in private:
        if d == root or d in root.parents or root in d.parents:
            raise ValueError(f"private dir {d} and the cluster's root {root} must not nest")
        d.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    temp_dir = root / "ray"
    temp_dir.mkdir(exist_ok=True)
    (root / "nodes").mkdir(exist_ok=True)
    env = isolated_env(root, {**_NODE_ENV, **(env_extra or {})})
    gcs_port, dashboard_port = free_port(), free_port()
    cluster = IsolatedCluster(root=root, env=env, gcs_address=f"127.0.0.1:{gcs_port}",
                              dashboard_url=f"http://127.0.0.1:{dashboard_port}",
                              private_dirs=private, ray_temp_dir=temp_dir)
    head = [a for a in head_args(root, head_cpus, gcs_port, dashboard_port)
            if not a.startswith("--temp-dir=")] + [f"--temp-dir={temp_dir}"]
    worker = [f"--address={cluster.gcs_address}", f"--num-cpus={worker_cpus}",
              f"--dashboard-agent-listen-port={free_port()}", "--min-worker-port=0",
              "--max-worker-port=0", f"--temp-dir={temp_dir}"]
    try:
        cluster.processes.append(start_isolated_node(root, HEAD, private, temp_dir, head, env))
        # The worker only needs the GCS to answer; a port check is cheaper than `ray list nodes`.
        wait_until(lambda: _listening(gcs_port), timeout, "the head's GCS port")
        cluster.processes.append(start_isolated_node(root, WORKER, private, temp_dir, worker, env))
        nodes = wait_until(lambda: len(n := cluster.alive_nodes()) == 2 and n, timeout, "2 alive nodes")
        for n in nodes:
            cluster.node_ids[HEAD if n["is_head_node"] else WORKER] = n["node_id"]
        yield cluster
    finally:
        stop_nodes(cluster.processes)
