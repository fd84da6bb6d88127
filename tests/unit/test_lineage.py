"""pipelines/lineage.py: data fingerprints change exactly when the data does, on either back end."""

from __future__ import annotations

import time

from pipelines.lineage import fingerprint_files
from pipelines.storage import StoragePath


def test_fingerprint_follows_content_and_rewrites(store_root: StoragePath) -> None:
    """A rewritten file gets a new fingerprint even under the same name (locally: its bytes;
    in an object store: its size and modification time, without reading it)."""
    a, b = store_root / "a.parquet", store_root / "b.parquet"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    first = fingerprint_files([str(a), str(b)])
    assert fingerprint_files([str(b), str(a)]) == first  # order-free
    assert fingerprint_files([str(a)]) != first
    time.sleep(1.1)  # object stores keep modification times to the second
    a.write_bytes(b"ONE")  # same size: only the content (or the mtime) tells
    assert fingerprint_files([str(a), str(b)]) != first
