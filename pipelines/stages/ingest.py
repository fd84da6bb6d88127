"""Ingest: turn a configured source into a Ray Dataset."""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import DemoSource, FileSource
from pipelines.demo import write_demo_parquet
from pipelines.lineage import fingerprint_files

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["InputError", "read_files", "read_source", "resolve_paths", "source_fingerprint",
           "source_path"]

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """Input data that cannot be read; the message names the path."""


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _check_local_path(path: str) -> None:
    local = path.removeprefix("file://")
    if any(ch in local for ch in "*?["):
        if not glob.glob(local, recursive=True):
            raise InputError(f"no input file matches {path!r}")
    elif not Path(local).exists():
        raise InputError(f"input path does not exist: {path!r}")


def resolve_paths(path: str) -> list[str]:
    """Expand a local glob or folder into its files; remote paths are returned as given."""
    if not _is_local(path):
        return [path]
    _check_local_path(path)
    local = path.removeprefix("file://")
    # Ray's readers take globs only through explicit file lists.
    if any(c in local for c in "*?["):
        return sorted(glob.glob(local, recursive=True))
    if Path(local).is_dir():
        return sorted(str(p) for p in Path(local).rglob("*") if p.is_file()
                      and not p.name.startswith((".", "_")))
    return [local]


def read_files(path: str, fmt: str) -> Dataset:
    """Read Parquet, CSV or JSON Lines from a file, folder or glob into a Dataset."""
    import ray.data

    paths: str | list[str] = resolve_paths(path) if _is_local(path) else path
    readers = {
        "parquet": ray.data.read_parquet,
        "csv": ray.data.read_csv,
        "json": ray.data.read_json,
    }
    try:
        return readers[fmt](paths)
    except Exception as err:  # Ray wraps reader errors; say which input it was.
        raise InputError(f"cannot read {fmt} input {path!r}: {err}") from err


def source_path(source: DemoSource | FileSource, work_dir: Path) -> str:
    """Where the source's data lies; the demo source is generated there first if needed."""
    if isinstance(source, DemoSource):
        return str(write_demo_parquet(work_dir / "data", source.rows, source.seed))
    return source.path


def read_source(source: DemoSource | FileSource, work_dir: Path) -> Dataset:
    """Read the configured source. The demo source is generated once to Parquet, then read."""
    fmt = "parquet" if isinstance(source, DemoSource) else source.format
    return read_files(source_path(source, work_dir), fmt)


def source_fingerprint(source: DemoSource | FileSource, work_dir: Path) -> tuple[str, str]:
    """``(uri, fingerprint)`` of the source's data, for lineage and stage caching.

    Every source kind answers here, so the runner never needs to know how a kind is stored.
    """
    path = source_path(source, work_dir)
    return path, fingerprint_files(resolve_paths(path))
