"""Lineage facts recorded with every run: code version and data fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

__all__ = ["fingerprint_dataset", "fingerprint_files", "git_sha"]

logger = logging.getLogger(__name__)


def git_sha(cwd: str | Path = ".") -> str | None:
    """The commit of the working tree (suffixed ``-dirty`` with local changes), if in git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def fingerprint_files(paths: Iterable[str]) -> str:
    """SHA-256 over the sorted input files' names and contents.

    Local files are hashed by content. Object-store files are hashed by name, size and
    modification time from one metadata lookup each, since reading them all costs a full pass
    over the data: rewriting an object (even under the same name) changes its fingerprint, so a
    cached stage is never reused for data that changed.
    """
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        if "://" in p and not p.startswith("file://"):
            h.update(_remote_identity(p).encode())
            continue
        local = Path(p.removeprefix("file://"))
        h.update(local.name.encode())
        if local.is_file():
            with local.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(p.encode())
    return h.hexdigest()


def _remote_identity(uri: str) -> str:
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return f"{uri}\nmissing"
    mtime = info.mtime_ns if info.mtime_ns is not None else ""
    return f"{uri}\n{info.size}\n{mtime}"


def _block_digest(batch: pa.Table) -> dict[str, list[Any]]:
    import pyarrow as pa

    total = 0
    for row in batch.to_pylist():
        line = json.dumps(row, sort_keys=True, default=str).encode()
        total += int.from_bytes(hashlib.sha256(line).digest()[:16], "big")
    return {"rows": [batch.num_rows], "digest": [str(total % (1 << 128))],
            "columns": [",".join(sorted(pa.table(batch).column_names))]}


def fingerprint_dataset(ds: Dataset, label: str) -> str:
    """SHA-256 of a Dataset's rows, whatever their order and blocks: ``label`` (where they came
    from), the column names, the row count and the sum of per-row hashes.

    The hashing runs in Ray tasks over the blocks; one row per block comes back. Hash a
    materialised Dataset (a snapshot) that the stages then read, or the source is read twice.
    """
    parts = ds.map_batches(_block_digest, batch_format="pyarrow", batch_size=None).take_all()
    rows = sum(int(p["rows"]) for p in parts)
    total = sum(int(p["digest"]) for p in parts) % (1 << 128)
    columns = sorted({c for p in parts for c in str(p["columns"]).split(",") if c})
    return hashlib.sha256(f"{label}\n{','.join(columns)}\n{rows}:{total}".encode()).hexdigest()
