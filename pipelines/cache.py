"""Stage cache: each stage's output is addressed by a hash of everything it depends on.

A stage's key hashes its config section(s), the code version and its upstream stage's key (the
first stage hashes the input data's fingerprint instead), so a key names one result exactly:
re-running an unchanged pipeline finds every key and reuses every stage; changing one
hyperparameter changes the train key and every key after it, and only those stages run.

An entry is a folder of outputs (Parquet data sets, a model, plots) plus a manifest written
last, atomically (write then rename). An entry without its manifest is an interrupted stage:
it is wiped and recomputed, so a crash never leaves a half-written output that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "CacheEntry", "StageCache", "code_version", "stage_key"]

logger = logging.getLogger(__name__)

MANIFEST = "_raypipe_stage.json"


def stage_key(*parts: Any) -> str:
    """SHA-256 over the canonical JSON of ``parts`` (config dumps, keys, fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@cache
def code_version() -> str:
    """Hash of the ``pipelines`` package's source files.

    Hashing the sources (rather than asking git) also works in an installed package or a
    Docker image, and catches uncommitted edits exactly; any code change invalidates every
    stage, which is conservative but never serves a result the current code would not produce.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One stage's cached result: ``path`` holds its outputs, the manifest its record."""

    stage: str
    key: str
    path: Path

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    def load(self) -> dict[str, Any] | None:
        """The finished stage's record, or ``None`` when the stage never finished here."""
        try:
            record: dict[str, Any] = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("cache entry %s is unreadable (%s); recomputing", self.path, err)
            return None
        return record

    def reset(self) -> None:
        """Empty the folder: leftovers of an interrupted attempt must not mix with new output."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)

    def commit(self, record: dict[str, Any]) -> None:
        """Mark the stage finished; written last and renamed into place, so it is atomic."""
        tmp = self.path / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps({"stage": self.stage, "key": self.key, **record},
                                  indent=2, default=str))
        os.replace(tmp, self.manifest)


class StageCache:
    """Entries under ``root/<stage>/<key>``; one root per pipeline name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, stage: str, key: str) -> CacheEntry:
        return CacheEntry(stage, key, self.root / stage / key[:24])
