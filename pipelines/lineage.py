"""Lineage facts recorded with every run: code version and data fingerprint."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from collections.abc import Iterable
from pathlib import Path

__all__ = ["fingerprint_files", "git_sha"]

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
    """SHA-256 over the sorted input files' names and contents (local files).

    Remote files are fingerprinted by name only, since reading them twice costs a full pass.
    """
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        local = Path(p.removeprefix("file://"))
        h.update(local.name.encode())
        if local.is_file():
            with local.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(p.encode())
    return h.hexdigest()
