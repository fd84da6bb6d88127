"""The Serve app over real HTTP: answers, validation errors, and parity with batch/pyfunc."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.demo import generate_demo_frame

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(trained: dict[str, Any]) -> Iterator[str]:
    from ray import serve

    from pipelines.serving import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app({"model_uri": "models:/raypipe-demo@champion",
                   "tracking_uri": trained["cfg"].tracking_uri, "max_request_rows": 500}),
        name="raypipe-test", route_prefix="/",
    )
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def _rows(n: int) -> pd.DataFrame:
    raw = generate_demo_frame(3000, 7).drop(columns=["churned"])
    return raw[raw["tenure_months"] >= 0].tail(n).reset_index(drop=True)


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.astype(object).where(frame.notna(), None)
    for col in ("signup_date", "last_login"):
        out[col] = frame[col].map(lambda t: t.isoformat() if pd.notna(t) else None)
    return out.to_dict(orient="records")


def test_healthz(server: str) -> None:
    r = httpx.get(f"{server}/healthz", timeout=30)
    assert r.status_code == 200
    assert r.json()["model"]["name"] == "raypipe-demo"


def test_predict_answers_with_labels_probabilities_and_model(server: str,
                                                             trained: dict[str, Any]) -> None:
    rows = _json_rows(_rows(20))
    r = httpx.post(f"{server}/predict", json={"instances": rows}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 20 and len(body["probabilities"]) == 20
    assert set(body["predictions"]) <= {0, 1}
    assert body["model"] == {"name": "raypipe-demo",
                             "version": trained["summary"].model_version}


def test_batch_serve_and_pyfunc_predict_identically(server: str, trained: dict[str, Any],
                                                    tmp_path: Any) -> None:
    """The same raw rows (missing values, odd spellings) through all three paths."""
    from pipelines.config import BatchConfig
    from pipelines.stages.batch import predict_dataset
    from pipelines.stages.ingest import read_files

    frame = _rows(300)
    assert frame["plan"].isna().any() and frame["monthly_charges"].isna().any()
    cfg = trained["cfg"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model("models:/raypipe-demo@champion").predict(frame)

    path = tmp_path / "in.parquet"
    frame.to_parquet(path)
    batch = predict_dataset(read_files(str(path), "parquet"),
                            model_uri="models:/raypipe-demo@champion",
                            tracking_uri=cfg.tracking_uri, cfg=BatchConfig(batch_size=64)).to_pandas()
    batch = batch.set_index("customer_id").loc[frame["customer_id"]].reset_index()

    r = httpx.post(f"{server}/predict", json={"instances": _json_rows(frame)}, timeout=60)
    assert r.status_code == 200, r.text
    served = r.json()

    assert len(batch) == len(frame) == len(served["predictions"])
    np.testing.assert_array_equal(pyfunc["probability"].to_numpy(), batch["probability"].to_numpy())
    np.testing.assert_array_equal(pyfunc["probability"].to_numpy(), np.array(served["probabilities"]))
    assert pyfunc["prediction"].tolist() == batch["prediction"].tolist() == served["predictions"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(tenure_months="lots"), "instances.0.tenure_months"),
        (lambda r: r.pop("plan"), "instances.0.plan"),
        (lambda r: r.update(favourite_colour="red"), "instances.0.favourite_colour"),
        (lambda r: r.update(signup_date="not a date"), "instances.0.signup_date"),
        (lambda r: r.update(plan=3), "instances.0.plan"),
    ],
    ids=["wrong-type", "missing-column", "unknown-column", "bad-datetime", "number-for-string"],
)
def test_bad_rows_get_422_naming_the_field(server: str, mutate: Any, field: str) -> None:
    row = _json_rows(_rows(1))[0]
    mutate(row)
    r = httpx.post(f"{server}/predict", json={"instances": [row]}, timeout=30)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert field.split(".")[-1] in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"{not json", 400),
        (b'{"rows": []}', 422),
        (b'{"instances": []}', 422),
        (b'{"instances": "x"}', 422),
        (b"[1, 2]", 422),
    ],
)
def test_malformed_bodies_get_4xx(server: str, body: bytes, status: int) -> None:
    r = httpx.post(f"{server}/predict", content=body,
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status, r.text
    assert "error" in r.json()


def test_oversized_request_gets_413(server: str) -> None:
    row = _json_rows(_rows(1))[0]
    r = httpx.post(f"{server}/predict", json={"instances": [row] * 501}, timeout=30)
    assert r.status_code == 413
    # ...and the server still answers normally afterwards.
    assert httpx.post(f"{server}/predict", json={"instances": [row]}, timeout=30).status_code == 200
