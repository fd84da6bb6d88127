"""The request logger: batched Parquet files with a fixed schema, sampling, and a bounded queue
that drops (and counts) instead of blocking. No Ray."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.config import ConfigError, RequestLogConfig, load_config
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


def test_the_default_logs_a_tenth_of_requests_with_retention_and_a_cap() -> None:
    cfg = RequestLogConfig()
    assert cfg.sample_rate == 0.1
    assert cfg.retention_hours == 720 and cfg.max_bytes == 10 * 1024**3
    assert cfg.exclude_columns == [] and cfg.include_columns is None


def test_excluded_columns_never_reach_the_files(tmp_path: Path) -> None:
    log = RequestLogger(RequestLogConfig(exclude_columns=["plan", "since"]), str(tmp_path))
    for i in range(3):
        log.log(_record(i))
    log.close()
    assert set(_read(tmp_path).columns) == {"request_id", "timestamp", "model_version", "x",
                                             "autopay", "prediction", "probability"}
    for f in tmp_path.glob("*.parquet"):  # not in the data, the statistics or the metadata
        assert b"basic" not in f.read_bytes() and b"plan" not in f.read_bytes()


def test_an_allow_list_keeps_only_its_inputs(tmp_path: Path) -> None:
    keys = {"request_id", "timestamp", "model_version", "prediction", "probability"}
    only_x = RequestLogger(RequestLogConfig(include_columns=["x"]), str(tmp_path / "x"))
    no_inputs = RequestLogger(RequestLogConfig(include_columns=[]), str(tmp_path / "none"))
    for log in (only_x, no_inputs):
        log.log(_record(0))
        log.close()
    assert set(_read(tmp_path / "x").columns) == keys | {"x"}
    assert set(_read(tmp_path / "none").columns) == keys


def test_a_misspelt_column_setting_is_reported(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    log = RequestLogger(RequestLogConfig(exclude_columns=["plna"]), str(tmp_path))
    log.log(_record(0))
    log.log(_record(1))
    log.close()
    said = [r.getMessage() for r in caplog.records if "plna" in r.getMessage()]
    assert len(said) == 1 and "exclude_columns" in said[0] and "version 3" in said[0]


def _plant(folder: Path, hours_ago: float, size: int, seq: int, *, tmp: bool = False) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - hours_ago * 3600))
    name = f"{stamp}-v3-123-0a1b2c3d-{seq:06d}.parquet"
    path = folder / (f".{name}.tmp" if tmp else name)
    path.write_bytes(b"x" * size)
    return path


def _sweep(folder: Path, **settings: Any) -> list[str]:
    """What a logger with these settings leaves after its retention pass (no rows logged)."""
    log = RequestLogger(RequestLogConfig(**settings), str(folder))
    log.close()
    log.sweep()  # after close: the thread is done, so this pass is the last word
    return sorted(p.name for p in folder.iterdir())


def test_the_disk_cap_deletes_the_oldest_log_files_and_nothing_else(tmp_path: Path) -> None:
    old, older, oldest = (_plant(tmp_path, h, 1000, h) for h in (1, 2, 3))
    foreign = [tmp_path / "labels.parquet", tmp_path / "20200101T000000-mine.parquet",
               tmp_path / "README"]
    for f in foreign:
        f.write_bytes(b"y" * 50_000)  # far past the cap, yet not ours to delete
    young_tmp = _plant(tmp_path, 0, 5000, 9, tmp=True)  # being written: not counted
    dead_tmp = _plant(tmp_path, 2, 10, 8, tmp=True)  # a writer died mid-file two hours ago
    left = _sweep(tmp_path, max_bytes=2500, retention_hours=None)
    assert left == sorted([old.name, older.name, young_tmp.name, *(f.name for f in foreign)])
    assert not oldest.exists() and not dead_tmp.exists()


def test_the_cap_applies_to_what_the_logger_writes(tmp_path: Path) -> None:
    planted = [_plant(tmp_path, h, 1000, h) for h in (3, 2, 1)]
    log = RequestLogger(RequestLogConfig(), str(tmp_path))
    log.log(_record(0))
    log.close()
    written = [p for p in tmp_path.glob("*.parquet") if p not in planted]
    assert len(written) == 1
    cap = written[0].stat().st_size + 1000
    assert _sweep(tmp_path, max_bytes=cap) == sorted([planted[2].name, written[0].name])


def test_the_age_limit_deletes_old_log_files_only(tmp_path: Path) -> None:
    stale = _plant(tmp_path, 30, 10, 1)
    stale_tmp = _plant(tmp_path, 30, 10, 2, tmp=True)  # left by a writer that died
    fresh = _plant(tmp_path, 1, 10, 3)
    foreign = tmp_path / "19990101T000000-v3-1-00000000-000001.csv"
    foreign.write_text("old but not ours")
    assert _sweep(tmp_path, retention_hours=24, max_bytes=None) == sorted(
        [fresh.name, foreign.name])
    assert not stale.exists() and not stale_tmp.exists()


def test_no_limits_delete_nothing(tmp_path: Path) -> None:
    files = sorted(_plant(tmp_path, h, 10, h).name for h in (10_000, 1))
    assert _sweep(tmp_path, retention_hours=None, max_bytes=None) == files


def test_retention_on_a_non_local_file_system_lists_the_folder_once() -> None:
    import fsspec
    import pyarrow.fs as pafs

    class Counting(pafs.FSSpecHandler):
        listings = 0

        def get_file_info_selector(self, selector: Any) -> Any:
            Counting.listings += 1
            return super().get_file_info_selector(selector)

    memory = fsspec.filesystem("memory")
    fs = pafs.PyFileSystem(Counting(memory))
    folder = f"/reqlog-{time.time_ns()}"
    memory.mkdir(folder)
    for h in range(50):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - (100 + h) * 3600))
        memory.pipe(f"{folder}/{stamp}-v3-1-0a1b2c3d-{h:06d}.parquet", b"x" * 10)
    memory.pipe(f"{folder}/notes.txt", b"not ours")
    log = RequestLogger(RequestLogConfig(retention_hours=24), folder, filesystem=fs)
    log.log(_record(0))
    log.close()
    Counting.listings = 0
    log.sweep()
    left = sorted(p.rsplit("/", 1)[1] for p in memory.ls(folder, detail=False))
    assert Counting.listings == 1
    assert len(left) == 2 and "notes.txt" in left and left[0].endswith("-000001.parquet")


def test_column_and_retention_settings_are_validated_by_field() -> None:
    cfg = load_config(None, ["monitor.request_log.exclude_columns=[email, name, email]",
                             "monitor.request_log.retention_hours=null"])
    log = cfg.monitor.request_log
    assert log.exclude_columns == ["email", "name"] and log.retention_hours is None
    assert not log.logs_column("email") and log.logs_column("plan")
    section = r"monitor\.request_log"
    with pytest.raises(ConfigError, match=rf"{section}: .*\['plan'\] named in both"):
        load_config(None, ["monitor.request_log.exclude_columns=[plan]",
                           "monitor.request_log.include_columns=[plan, x]"])
    with pytest.raises(ConfigError, match=rf"{section}\.exclude_columns: .*request_id"):
        load_config(None, ["monitor.request_log.exclude_columns=[request_id]"])
    with pytest.raises(ConfigError, match=rf"{section}\.include_columns: .*empty"):
        load_config(None, ["monitor.request_log.include_columns=['']"])
    for field, bad in (("retention_hours", "0"), ("max_bytes", "0")):
        with pytest.raises(ConfigError, match=rf"{section}\.{field}"):
            load_config(None, [f"monitor.request_log.{field}={bad}"])
