"""Request logging from a running Serve app: every request's rows land in Parquet with the
request id the client sent (or the one the server made and returned), the time and the model
version, without the columns the config keeps out, and the logged folder is a window
`raypipe monitor` reads (drift on the logged columns, the others named as not logged)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.e2e.serving_helpers import MODEL, demo_rows, free_port, json_rows

pytestmark = pytest.mark.e2e


EXCLUDED = ["customer_id", "region"]  # an id, and a monitored input


def _uri(trained: dict[str, Any]) -> str:
    return f"models:/{MODEL}/{trained['summary'].model_version}"


@pytest.fixture(scope="module")
def logging_server(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[str, Path]]:
    from ray import serve

    from pipelines.serving import build_app

    logs = tmp_path_factory.mktemp("request_logs")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app({"model_uri": _uri(trained),
                   "tracking_uri": trained["cfg"].tracking_uri, "model_poll_interval_s": 0,
                   "request_log": {"sample_rate": 1.0, "flush_interval_s": 0.5,
                                   "flush_rows": 100_000, "exclude_columns": EXCLUDED},
                   "request_log_path": str(logs)}),
        name="raypipe-log-test", route_prefix="/",
    )
    yield f"http://127.0.0.1:{port}", logs
    serve.shutdown()


def _logged(logs: Path, rows: int, timeout_s: float = 30) -> pd.DataFrame:
    deadline = time.monotonic() + timeout_s
    while True:
        files = sorted(logs.glob("*.parquet"))
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files \
            else pd.DataFrame()
        if len(frame) >= rows or time.monotonic() > deadline:
            return frame
        time.sleep(0.2)


def test_requests_are_logged_with_ids_versions_inputs_and_predictions(
        logging_server: tuple[str, Path], trained: dict[str, Any]) -> None:
    server, logs = logging_server
    frame = demo_rows(30)
    given = httpx.post(f"{server}/predict", json={"instances": json_rows(frame.iloc[:20])},
                       headers={"X-Request-ID": "client-id-1"}, timeout=60)
    assert given.status_code == 200 and given.headers["x-request-id"] == "client-id-1"
    made = httpx.post(f"{server}/invocations",
                      json={"dataframe_records": json_rows(frame.iloc[20:])}, timeout=60)
    assert made.status_code == 200
    new_id = made.headers["x-request-id"]  # made by Serve's proxy, one per request
    assert new_id and new_id != "client-id-1" and "," not in new_id
    bad = httpx.post(f"{server}/predict", json={"instances": [{"plan": 5}]}, timeout=60)
    assert bad.status_code == 422 and bad.headers["x-request-id"]  # answered, not logged

    logged = _logged(logs, 30)
    assert len(logged) == 30
    assert logged["request_id"].value_counts().to_dict() == {"client-id-1": 20, new_id: 10}
    assert set(logged["model_version"]) == {str(trained["summary"].model_version)}
    assert logged["timestamp"].dt.tz is not None
    first = logged[logged["request_id"] == "client-id-1"].reset_index(drop=True)
    assert first["probability"].tolist() == given.json()["probabilities"]
    assert first["prediction"].tolist() == given.json()["predictions"]
    pd.testing.assert_series_equal(first["tenure_months"], frame["tenure_months"].iloc[:20]
                                   .reset_index(drop=True), check_dtype=False)
    assert first["plan"].tolist() == frame["plan"].iloc[:20].tolist()
    assert not set(EXCLUDED) & set(logged.columns)
    ids = frame["customer_id"].astype(str).tolist()
    for f in logs.glob("*.parquet"):  # not in the data, statistics or metadata either
        raw = f.read_bytes()
        assert not any(i.encode() in raw for i in ids) and b"region" not in raw


def test_logged_requests_are_a_monitoring_window(logging_server: tuple[str, Path],
                                                 trained: dict[str, Any], tmp_path: Path) -> None:
    from pipelines.monitoring import MonitorOptions, monitor

    server, logs = logging_server
    frame = demo_rows(300)
    for start in range(0, 300, 50):
        r = httpx.post(f"{server}/predict",
                       json={"instances": json_rows(frame.iloc[start:start + 50])}, timeout=60)
        assert r.status_code == 200
    logged = _logged(logs, 300)
    assert len(logged) >= 300
    cfg = trained["cfg"]
    since = (logged["timestamp"].min() - pd.Timedelta(seconds=1)).isoformat()
    result = monitor(cfg.model_copy(update={"monitor": cfg.monitor.model_copy(
        update={"output_dir": str(tmp_path)})}),
        MonitorOptions(window=str(logs), since=since, model_uri=_uri(trained)))
    assert result.summary["window"]["rows"] == len(logged)
    assert "region" in result.summary["not_logged"]
    compared = {f["column"] for f in result.summary["features"]}
    assert compared and not set(EXCLUDED) & compared
    until = logged["timestamp"].min().isoformat()  # [since, until): before the first request
    nothing = monitor(cfg.model_copy(update={"monitor": cfg.monitor.model_copy(
        update={"output_dir": str(tmp_path)})}),
        MonitorOptions(window=str(logs), until=until, model_uri=_uri(trained)))
    assert nothing.summary["window"]["rows"] == 0 and not nothing.flagged
