"""Storage every node of a Ray cluster can reach, checked before a run starts.

On one machine every path is shared. On a multi-node cluster the driver, the Tune trials, the
Ray Train workers and the batch-inference actors run on different nodes, so the Tune/Train
storage, the MLflow store, the data the pipeline generates and the outputs it writes must be
on storage that every node reaches: object storage (``s3://``, ``gs://``, ...), an MLflow
server, or a shared file system mounted at the same path on every node. A node-local path
there fails late and obscurely (a trial cannot find its checkpoint, an actor cannot load the
model); :func:`check_shared_storage` fails before the first stage and names the field.

Shared mounts are declared, never guessed: ``RAYPIPE_SHARED_DIRS`` lists (``os.pathsep``
separated) the directories mounted at the same path on every node, e.g. an NFS export or a
Kubernetes ReadWriteMany volume. Local paths under one of them pass.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

from pipelines.config.base import ConfigError

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig

__all__ = [
    "SHARED_DIRS_ENV",
    "Location",
    "SharedStorageError",
    "check_shared_storage",
    "local_path",
    "pipeline_locations",
    "require_shared",
    "shared_dirs_from_env",
]

logger = logging.getLogger(__name__)

SHARED_DIRS_ENV = "RAYPIPE_SHARED_DIRS"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class SharedStorageError(ConfigError):
    """A node-local path is configured for a run on a multi-node cluster; names the field."""


class Location(NamedTuple):
    """One place the run reads or writes, with the config field (or flag) it comes from."""

    field: str
    uri: str
    note: str = ""


def local_path(uri: str) -> Path | None:
    """The local file-system path behind ``uri``, or ``None`` for remote storage.

    Plain paths, ``file://`` URIs and SQLite URIs are local; any other scheme (``s3://``,
    ``gs://``, ``http(s)://``, ``postgresql://``, ``databricks``...) is not.
    """
    if uri.startswith("sqlite:"):
        rest = uri.removeprefix("sqlite:")
        path = rest[3:] if rest.startswith("///") else ""  # sqlite:///rel.db, sqlite:////abs.db
        return Path(path) if path not in ("", ":memory:") else None
    if uri.startswith("file:"):
        return Path(urlparse(uri).path)
    if uri == "databricks" or uri.startswith("databricks-") or _SCHEME.match(uri):
        return None
    return Path(uri)


def pipeline_locations(cfg: PipelineConfig) -> list[Location]:
    """Every place a pipeline run reads or writes that other nodes must reach too."""
    work = "runtime.work_dir"
    locations = [
        Location("runtime.storage_path", cfg.storage_path,
                 "" if cfg.runtime.storage_path else f"default: <{work}>/ray_results"),
        Location("tracking.uri", cfg.tracking_uri,
                 "" if cfg.tracking.uri else f"default: $MLFLOW_TRACKING_URI, else SQLite under <{work}>"),
        Location("batch.output_dir", str(cfg.output_dir),
                 "" if cfg.batch.output_dir else f"default: <{work}>/outputs/<name>"),
    ]
    locations.append(Location(work, str(cfg.cache_dir), "the stage cache (stage outputs)"))
    if cfg.tracking_uri.startswith("sqlite:") and not cfg.tracking.uri:
        locations.append(Location(work, cfg.artifact_location, "MLflow artifacts of the local store"))
    # Imported here: the readers' modules import Location from this one.
    from pipelines.sources.registry import get_reader

    locations.extend(get_reader(cfg.source, cfg.work_dir).locations())
    return locations


def shared_dirs_from_env() -> list[Path]:
    """The directories ``RAYPIPE_SHARED_DIRS`` declares as mounted on every node."""
    raw = os.environ.get(SHARED_DIRS_ENV, "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p.strip()]


def _multi_node_reason(nodes: Sequence[Mapping[str, Any]], driver_node_id: str | None) -> str | None:
    alive = [n for n in nodes if n.get("Alive")]
    if len(alive) > 1:
        return f"the Ray cluster has {len(alive)} alive nodes"
    driver = next((n for n in alive if n.get("NodeID") == driver_node_id), None)
    if driver is not None and not driver.get("Resources", {}).get("CPU"):
        # An autoscaling cluster whose head takes no work (the KubeRay samples) has one node
        # at start, yet every task will run on a worker that does not exist yet.
        return "the driver's node offers no CPUs, so the work runs on other nodes"
    return None


def require_shared(
    locations: Sequence[Location],
    *,
    nodes: Sequence[Mapping[str, Any]] | None = None,
    driver_node_id: str | None = None,
    shared_dirs: Sequence[Path] | None = None,
) -> None:
    """Raise :class:`SharedStorageError` when a location is node-local on a multi-node cluster.

    ``nodes`` (``ray.nodes()`` entries) and ``driver_node_id`` default to the connected
    cluster's; without a connected cluster there is nothing to check. ``shared_dirs`` default
    to ``$RAYPIPE_SHARED_DIRS``.
    """
    if nodes is None:
        ray = sys.modules.get("ray")  # not imported: certainly not connected (and no import)
        if ray is None or not ray.is_initialized():
            return
        nodes = ray.nodes()
        driver_node_id = ray.get_runtime_context().get_node_id()
    reason = _multi_node_reason(nodes, driver_node_id)
    if reason is None:
        return
    shared = list(shared_dirs) if shared_dirs is not None else shared_dirs_from_env()
    problems = []
    for loc in locations:
        path = local_path(loc.uri)
        if path is None:
            continue
        resolved = path.resolve()
        if not any(resolved.is_relative_to(d) for d in shared):
            note = f" ({loc.note})" if loc.note else ""
            problems.append(f"  {loc.field}: {loc.uri} is a node-local path{note}")
    if problems:
        declared = ", ".join(str(d) for d in shared) or "none"
        raise SharedStorageError(
            f"{reason}, but these locations are only reachable from this node:\n"
            + "\n".join(problems)
            + "\nPoint them at storage every node reaches (s3://, gs://, an MLflow server for "
            "tracking.uri), or at a file system mounted at the same path on every node and "
            f"list its mount point in {SHARED_DIRS_ENV} (declared now: {declared})."
        )
    logger.info("%s; every configured location is on shared storage", reason)


def check_shared_storage(cfg: PipelineConfig, **cluster: Any) -> None:
    """Fail early, naming the field, when ``cfg`` keeps node-local paths on a multi-node cluster.

    Keyword arguments are passed to :func:`require_shared` (tests give ``nodes`` etc.).
    """
    require_shared(pipeline_locations(cfg), **cluster)
