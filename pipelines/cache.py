"""Stage cache: each stage's output is addressed by a hash of everything it depends on.

A stage's key hashes its config section(s), the code version and its upstream stage's key (the
first stage hashes the input data's fingerprint instead), so a key names one result exactly:
re-running an unchanged pipeline finds every key and reuses every stage; changing one
hyperparameter changes the train key and every key after it, and only those stages run.

An entry is a folder of outputs (Parquet data sets, a model, plots) plus a manifest written
last, atomically. The folder may be local or in an object store (``runtime.work_dir:
s3://...``); an object store has no rename, so the manifest is one object whose upload
completes or does not, and it lists every file of the entry with its size. An entry without
its manifest is an interrupted stage, and one whose files no longer match the list (a partial
copy, a lifecycle rule that expired part of it) is incomplete: either is wiped and recomputed,
so a crash never leaves a half-written output that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipelines.storage import StoragePath, Where, storage_path

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
    path: StoragePath

    @property
    def manifest(self) -> StoragePath:
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
        expected = record.pop("files", None)
        if expected is not None:
            present = self.path.files()
            missing = sorted(f for f, size in expected.items() if present.get(f) != size)
            if missing:
                logger.warning("cache entry %s lost %d file(s) since it finished (%s...); "
                               "recomputing", self.path, len(missing), missing[0])
                return None
        return record

    def reset(self) -> None:
        """Empty the folder: leftovers of an interrupted attempt must not mix with new output."""
        self.path.rmtree()
        self.path.mkdir()

    def commit(self, record: dict[str, Any]) -> None:
        """Mark the stage finished: the manifest, listing every output file, is written last."""
        files = {f: size for f, size in self.path.files().items() if f != MANIFEST}
        self.manifest.write_text(json.dumps(
            {"stage": self.stage, "key": self.key, **record, "files": files},
            indent=2, default=str))


class StageCache:
    """Entries under ``root/<stage>/<key>``; one root per pipeline name, local or remote."""

    def __init__(self, root: Where) -> None:
        self.root = storage_path(root)

    def entry(self, stage: str, key: str) -> CacheEntry:
        return CacheEntry(stage, key, self.root / stage / key[:24])
