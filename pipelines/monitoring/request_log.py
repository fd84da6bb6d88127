"""Request logging for the Serve app: a sample of requests and predictions, to Parquet.

The request path only decides whether to sample and appends a reference to the request's
already-validated columns and outputs to a bounded in-memory queue (no copy, no I/O, no lock
held for long). A background thread turns queued records into an Arrow table and writes one
Parquet file per flush (by size or by age, and on close) under a local folder or any pyarrow
file system URI. When the queue is full the record is dropped and counted: logging never
blocks or fails a request.

Each file holds ``request_id``, ``timestamp`` (UTC), ``model_version``, the model's input
columns that ``include_columns`` / ``exclude_columns`` let through (columns a client sends that
the model does not know are never written) and the prediction columns, so request logs and
batch inference output are read by `raypipe monitor` alike.

Files are named ``<UTC yyyymmddThhmmss>-v<version>-<pid>-<writer id>-<seq>.parquet``: one per
flush (the rotation), and name order is age order across replicas. The same thread applies
retention: it lists the folder once (one ``get_file_info`` call, local or object store), deletes
this naming pattern's files older than ``retention_hours``, then the oldest until the folder's
log files total ``max_bytes`` at most. Any other file in the folder is left alone.
"""

from __future__ import annotations

import calendar
import logging
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.config import RequestLogConfig

__all__ = ["LogFile", "LogRecord", "RequestLogger", "log_files", "records_table", "to_delete"]

logger = logging.getLogger(__name__)

_STAMP = "%Y%m%dT%H%M%S"
_OWN_NAME = re.compile(
    r"(?P<tmp>\.)?(?P<stamp>\d{8}T\d{6})-v[^/]*-\d+-[0-9a-f]{8}-\d{6}\.parquet(?(tmp)\.tmp)")
_SWEEP_EVERY_S = 60.0  # listing an object-store folder on every flush would cost a LIST storm
_STALE_PARTIAL_S = 3600.0  # no write takes an hour: such a .tmp file is a dead writer's

_ARROW_TYPES = {"float": "float64", "bool": "bool", "string": "string", "datetime": "timestamp"}


@dataclass(frozen=True)
class LogRecord:
    """One logged request: its rows by column, as the replica validated and predicted them."""

    request_id: str
    timestamp: float
    model_version: str
    schema: Mapping[str, str]
    """Input column -> kind (the model's input schema)."""
    columns: dict[str, list[Any]]
    outputs: dict[str, Any]
    n: int


def _input_array(values: list[Any], kind: str) -> Any:
    import pandas as pd
    import pyarrow as pa

    if kind == "datetime":
        ts = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce", format="mixed",
                            utc=True).dt.tz_localize(None)
        return pa.array(ts, type=pa.timestamp("us"), from_pandas=True)
    if kind == "float":
        return pa.array(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"),
                        type=pa.float64(), from_pandas=True)
    if kind == "bool":
        return pa.array([None if v is None else bool(v) for v in values], type=pa.bool_())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def records_table(records: list[LogRecord], cfg: RequestLogConfig | None = None) -> Any:
    """The records (all of one model version) as one Arrow table with a fixed schema: the
    input columns ``cfg`` lets through (default: all) and the outputs."""
    import numpy as np
    import pyarrow as pa

    n = sum(r.n for r in records)
    first = records[0]
    data: dict[str, Any] = {
        "request_id": pa.array([r.request_id for r in records for _ in range(r.n)], pa.string()),
        "timestamp": pa.array(np.repeat([int(r.timestamp * 1e6) for r in records],
                                        [r.n for r in records]), pa.timestamp("us", tz="UTC")),
        "model_version": pa.array([first.model_version] * n, pa.string()),
    }
    for col, kind in first.schema.items():
        if cfg is not None and not cfg.logs_column(col):
            continue
        values = [v for r in records for v in r.columns.get(col, [None] * r.n)]
        data[col] = _input_array(values, kind)
    for col in first.outputs:
        data[col] = pa.array(np.concatenate([np.asarray(r.outputs[col]) for r in records]))
    return pa.table(data)


@dataclass(frozen=True)
class LogFile:
    """One file of the log folder written by a request logger (its name says so)."""

    path: str
    written: float
    """Epoch seconds, from the UTC time in the name."""
    size: int
    partial: bool
    """A ``.<name>.tmp`` file: being written, or left by a writer that died."""


def log_files(infos: list[Any]) -> list[LogFile]:
    """The request logger's own files among ``pyarrow.fs.FileInfo`` entries, oldest first."""
    out = []
    for info in infos:
        m = _OWN_NAME.fullmatch(info.base_name)
        if m is None or info.size is None:
            continue
        st = m["stamp"]  # yyyymmddThhmmss; sliced, as strptime is 40x slower per file
        written = calendar.timegm((int(st[:4]), int(st[4:6]), int(st[6:8]), int(st[9:11]),
                                   int(st[11:13]), int(st[13:15]), 0, 0, 0))
        out.append(LogFile(info.path, written, info.size, partial=bool(m["tmp"])))
    return sorted(out, key=lambda f: (f.written, f.path))


def to_delete(files: list[LogFile], *, now: float, retention_hours: float | None,
              max_bytes: int | None) -> list[LogFile]:
    """Which of ``files`` (oldest first) retention removes: those older than
    ``retention_hours`` and partial files a dead writer left, then the oldest complete files
    until the rest total ``max_bytes``."""
    cutoff = -math.inf if retention_hours is None else now - retention_hours * 3600
    stale = max(cutoff, now - _STALE_PARTIAL_S)
    doomed = [f for f in files if f.written < (stale if f.partial else cutoff)]
    if max_bytes is None:
        return doomed
    kept = [f for f in files if f.written >= cutoff and not f.partial]
    total = sum(f.size for f in kept)
    for f in kept:
        if total <= max_bytes:
            break
        doomed.append(f)
        total -= f.size
    return doomed


class RequestLogger:
    """Queue of sampled request records and the thread that writes them as Parquet files."""

    def __init__(self, cfg: RequestLogConfig, path: str, *,
                 on_drop: Callable[[int], None] | None = None,
                 on_write: Callable[[int], None] | None = None,
                 rng: Callable[[], float] = random.random, filesystem: Any = None) -> None:
        """``filesystem``: the ``pyarrow.fs.FileSystem`` that ``path`` lies on; default: the
        local one, or the one a URI's scheme names."""
        import pyarrow.fs as pafs

        self.cfg = cfg
        self.path = path
        if filesystem is not None:
            self._fs, self._root = filesystem, path.rstrip("/")
        elif "://" in path:
            self._fs, self._root = pafs.FileSystem.from_uri(path)
        else:
            self._fs, self._root = pafs.LocalFileSystem(), os.path.abspath(path)
        self._fs.create_dir(self._root, recursive=True)
        self._on_drop = on_drop
        self._on_write = on_write
        self._rng = rng
        self._records: list[LogRecord] = []
        self._rows = 0
        self._oldest: float | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._last_sweep = -math.inf
        self._checked_versions: set[str] = set()
        self.dropped_rows = 0
        self.written_rows = 0
        self.deleted_files = 0
        self._thread = threading.Thread(target=self._run, name="raypipe-request-log",
                                        daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether to log the next request (decided before any work is spent on it)."""
        rate = self.cfg.sample_rate
        return rate >= 1.0 or (rate > 0.0 and self._rng() < rate)

    def log(self, record: LogRecord) -> bool:
        """Queue a record; False (and counted) when the queue is full or the logger closed."""
        with self._cond:
            if self._closed or self._rows + record.n > self.cfg.max_queue_rows:
                self.dropped_rows += record.n
                dropped = True
            else:
                dropped = False
                self._records.append(record)
                self._rows += record.n
                if self._oldest is None:
                    self._oldest = time.monotonic()
                if self._rows >= self.cfg.flush_rows:
                    self._cond.notify()
        if dropped:
            if self.dropped_rows == record.n or self.dropped_rows % 10_000 < record.n:
                logger.warning("request log queue full (%d rows): %d rows dropped so far",
                               self.cfg.max_queue_rows, self.dropped_rows)
            if self._on_drop:
                self._on_drop(record.n)
        return not dropped

    def flush(self) -> int:
        """Write what is queued now (from the calling thread); return the rows written."""
        with self._cond:
            records, self._records, self._rows, self._oldest = self._records, [], 0, None
        return self._write(records)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking records, write the queue out and stop the thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def sweep(self) -> list[str]:
        """Apply ``retention_hours`` and ``max_bytes`` to the folder now; return the paths
        deleted. One listing of the folder; only this logger's naming pattern is deleted."""
        import pyarrow.fs as pafs

        self._last_sweep = time.monotonic()
        cfg = self.cfg
        if cfg.retention_hours is None and cfg.max_bytes is None:
            return []
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(self._root, allow_not_found=True))
        except Exception:
            logger.exception("cannot list request log folder %s for retention", self.path)
            return []
        deleted = []
        for f in to_delete(log_files(infos), now=time.time(),
                           retention_hours=cfg.retention_hours, max_bytes=cfg.max_bytes):
            try:
                self._fs.delete_file(f.path)
            except FileNotFoundError:
                continue  # another replica's sweep got there first
            except Exception:
                logger.exception("cannot delete request log file %s", f.path)
                continue
            deleted.append(f.path)
        if deleted:
            self.deleted_files += len(deleted)
            logger.info("request log retention: deleted %d file(s) from %s", len(deleted),
                        self.path)
        return deleted

    def _due(self) -> bool:
        if self._closed or self._rows >= self.cfg.flush_rows:
            return True
        return self._oldest is not None and \
            time.monotonic() - self._oldest >= self.cfg.flush_interval_s

    def _wait_s(self) -> float:
        now = time.monotonic()
        flush = self.cfg.flush_interval_s if self._oldest is None else \
            self.cfg.flush_interval_s - (now - self._oldest)
        return max(0.0, min(flush, self._last_sweep + _SWEEP_EVERY_S - now))

    def _run(self) -> None:
        # Sweeps at start and then at most once a minute, after a flush or while idle, so an
        # idle replica still applies the age limit.
        while True:
            with self._cond:
                while not self._due() and \
                        time.monotonic() - self._last_sweep < _SWEEP_EVERY_S:
                    self._cond.wait(self._wait_s())
                closing = self._closed
            self.flush()
            if closing:
                return
            if time.monotonic() - self._last_sweep >= _SWEEP_EVERY_S:
                self.sweep()

    def _check_columns(self, version: str, schema: Mapping[str, str]) -> None:
        """Say once per model version when a column setting names no input of the model: a
        misspelt ``exclude_columns`` entry would otherwise log the column it meant to hide."""
        if version in self._checked_versions:
            return
        self._checked_versions.add(version)
        for field in ("exclude_columns", "include_columns"):
            unknown = [c for c in getattr(self.cfg, field) or () if c not in schema]
            if unknown:
                logger.warning("monitor.request_log.%s names %s, which model version %s does "
                               "not take as input (its inputs: %s)", field, unknown, version,
                               sorted(schema))

    def _write(self, records: list[LogRecord]) -> int:
        if not records:
            return 0
        import pyarrow.parquet as pq

        by_version: dict[str, list[LogRecord]] = {}
        for r in records:
            by_version.setdefault(r.model_version, []).append(r)
        written = 0
        for version, group in by_version.items():
            rows = sum(r.n for r in group)
            try:
                self._check_columns(version, group[0].schema)
                table = records_table(group, self.cfg)
                self._seq += 1
                stamp = time.strftime(_STAMP, time.gmtime())
                name = f"{stamp}-v{version}-{self._prefix}-{self._seq:06d}.parquet"
                final = f"{self._root}/{name}"
                # Written under a name readers skip, then renamed: a reader never sees half a file.
                tmp = f"{self._root}/.{name}.tmp"
                pq.write_table(table, tmp, filesystem=self._fs)
                self._fs.move(tmp, final)
                written += rows
            except Exception:
                # Storage trouble loses these records, never the replica; say how many.
                self.dropped_rows += rows
                logger.exception("cannot write %d request log rows to %s", rows, self.path)
                if self._on_drop:
                    self._on_drop(rows)
        self.written_rows += written
        if written and self._on_write:
            self._on_write(written)
        return written
