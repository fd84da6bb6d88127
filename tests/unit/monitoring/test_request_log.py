"""The request logger: batched Parquet files with a fixed schema, sampling, and a bounded queue
that drops (and counts) instead of blocking. No Ray."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.config import RequestLogConfig
from pipelines.monitoring.request_log import LogRecord, RequestLogger

SCHEMA = {"x": "float", "plan": "string", "autopay": "bool", "since": "datetime"}


def _record(i: int, n: int = 2, version: str = "3") -> LogRecord:
    return LogRecord(
        request_id=f"req-{i}", timestamp=1_700_000_000.0 + i, model_version=version,
        schema=SCHEMA,
        columns={"x": [float(i), None][:n] + [1.0] * max(0, n - 2),
                 "plan": ["basic", None][:n] + ["x"] * max(0, n - 2),
                 "autopay": [True, None][:n] + [False] * max(0, n - 2),
                 "since": [datetime(2024, 1, 2, 3, 4, 5), None][:n] + [None] * max(0, n - 2)},
        outputs={"prediction": np.array([1, 0] * n)[:n],
                 "probability": np.linspace(0.1, 0.9, n)},
        n=n)


def _read(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("*.parquet"))
    assert files and not list(folder.glob(".*tmp"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_flush_on_size_writes_typed_rows_with_ids(tmp_path: Path) -> None:
    log = RequestLogger(RequestLogConfig(flush_rows=6, flush_interval_s=60), str(tmp_path))
    for i in range(3):
        assert log.log(_record(i))
    deadline = time.monotonic() + 10
    while log.written_rows < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.written_rows == 6
    log.close()
    table = pq.read_table(next(tmp_path.glob("*.parquet")))
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {"request_id": "string", "timestamp": "timestamp[us, tz=UTC]",
                     "model_version": "string", "x": "double", "plan": "string",
                     "autopay": "bool", "since": "timestamp[us]", "prediction": "int64",
                     "probability": "double"}
    df = table.to_pandas()
    assert df["request_id"].tolist() == ["req-0", "req-0", "req-1", "req-1", "req-2", "req-2"]
    assert df["plan"].isna().tolist() == [False, True] * 3
    assert df["since"].iloc[0] == pd.Timestamp("2024-01-02 03:04:05")
    assert df["timestamp"].iloc[2] == pd.Timestamp(1_700_000_001, unit="s", tz="UTC")


def test_flush_on_age_and_on_close(tmp_path: Path) -> None:
    log = RequestLogger(RequestLogConfig(flush_rows=1000, flush_interval_s=0.2), str(tmp_path))
    log.log(_record(0))
    deadline = time.monotonic() + 10
    while log.written_rows < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.written_rows == 2  # the age flush, long before 1000 rows
    log.log(_record(1, version="4"))
    log.close()  # writes the rest at once
    df = _read(tmp_path)
    assert sorted(df["model_version"].unique()) == ["3", "4"] and len(df) == 4
    assert not log.log(_record(2))  # closed: dropped, counted
    assert log.dropped_rows == 2


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = RequestLogger(RequestLogConfig(flush_rows=100, flush_interval_s=60, max_queue_rows=5),
                        str(tmp_path), on_drop=dropped.append)
    t0 = time.perf_counter()
    accepted = [log.log(_record(i)) for i in range(5)]
    assert time.perf_counter() - t0 < 1.0
    assert accepted == [True, True, False, False, False]
    assert dropped == [2, 2, 2] and log.dropped_rows == 6
    log.close()
    assert len(_read(tmp_path)) == 4


def test_sample_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    log = RequestLogger(RequestLogConfig(sample_rate=0.25), str(tmp_path),
                        rng=lambda: float(rng.random()))
    share = np.mean([log.sampled() for _ in range(4000)])
    assert share == pytest.approx(0.25, abs=0.03)
    log.close()
    every = RequestLogger(RequestLogConfig(sample_rate=1.0), str(tmp_path / "all"))
    assert all(every.sampled() for _ in range(100))
    every.close()


def test_a_failing_store_loses_records_not_the_caller(tmp_path: Path) -> None:
    target = tmp_path / "logs"
    log = RequestLogger(RequestLogConfig(flush_rows=1000, flush_interval_s=60), str(target))
    target.rmdir()
    target.write_text("not a folder")  # every write now fails
    log.log(_record(0))
    assert log.flush() == 0
    assert log.dropped_rows == 2
    log.close()
