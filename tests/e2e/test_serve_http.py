"""The Serve app over real HTTP: every protocol, validation errors, metrics, and parity of
/predict, /invocations, /v2 infer, batch inference and mlflow.pyfunc on the same raw rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.e2e.serving_helpers import MODEL, demo_rows, free_port, json_rows

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def server(trained: dict[str, Any]) -> Iterator[str]:
    from ray import serve

    from pipelines.serving import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app({"model_uri": f"models:/{MODEL}@champion",
                   "tracking_uri": trained["cfg"].tracking_uri, "max_request_rows": 500,
                   "model_poll_interval_s": 0}),
        name="raypipe-test", route_prefix="/",
    )
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def _version(trained: dict[str, Any]) -> str:
    return str(trained["summary"].model_version)


def test_healthz(server: str) -> None:
    r = httpx.get(f"{server}/healthz", timeout=30)
    assert r.status_code == 200
    assert r.json()["model"]["name"] == MODEL


def test_predict_answers_with_labels_probabilities_and_model(server: str,
                                                             trained: dict[str, Any]) -> None:
    rows = json_rows(demo_rows(20))
    r = httpx.post(f"{server}/predict", json={"instances": rows}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 20 and len(body["probabilities"]) == 20
    assert set(body["predictions"]) <= {0, 1}
    assert body["model"] == {"name": MODEL, "version": _version(trained)}


# --------------------------------------------------------------------------- parity


def _v2_inputs(frame: pd.DataFrame, schema: dict[str, Any]) -> list[dict[str, Any]]:
    rows = json_rows(frame)
    kinds = {"float": "FP64", "bool": "BOOL", "string": "BYTES", "datetime": "BYTES"}
    return [{"name": c, "datatype": kinds[s["type"]], "shape": [len(rows)],
             "data": [r[c] for r in rows]} for c, s in schema.items()]


def _triton_probabilities(server: str, frame: pd.DataFrame,
                          schema: dict[str, Any]) -> np.ndarray:
    """The standard V2 client, binary tensors both ways."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready(MODEL)
    assert {i["name"] for i in client.get_model_metadata(MODEL)["inputs"]} == set(schema)
    inputs = []
    for c, s in schema.items():
        values = frame[c]
        if s["type"] == "float":
            arr = values.astype("float64").to_numpy()  # NaN: missing
            datatype = "FP64"
        elif s["type"] == "bool":
            arr, datatype = values.astype(bool).to_numpy(), "BOOL"
        elif s["type"] == "datetime":
            arr = np.array([t.isoformat().encode() for t in values], dtype=object)
            datatype = "BYTES"
        else:
            arr, datatype = np.array([v.encode() for v in values], dtype=object), "BYTES"
        t = triton.InferInput(c, [len(frame)], datatype)
        t.set_data_from_numpy(arr, binary_data=True)
        inputs.append(t)
    result = client.infer(MODEL, inputs)
    assert result.get_response()["model_version"]
    return np.asarray(result.as_numpy("probability"))


def test_every_protocol_batch_and_pyfunc_predict_identically(server: str, trained: dict[str, Any],
                                                            tmp_path: Path) -> None:
    """The same raw rows (missing values, odd spellings) through seven paths."""
    from pipelines.config import BatchConfig
    from pipelines.stages.batch import run_batch_inference
    from pipelines.stages.ingest import read_files

    frame = demo_rows(300)
    frame["autopay"] = frame["autopay"].astype(object)
    frame.loc[::11, "autopay"] = None  # MLflow's own server would make these False
    assert frame["plan"].isna().any() and frame["monthly_charges"].isna().any()
    cfg = trained["cfg"]
    mlflow.set_tracking_uri(cfg.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(frame)
    want_p = pyfunc["probability"].to_numpy()
    want_y = pyfunc["prediction"].tolist()
    rows = json_rows(frame)

    served = httpx.post(f"{server}/predict", json={"instances": rows}, timeout=60).json()
    np.testing.assert_array_equal(np.array(served["probabilities"]), want_p)
    assert served["predictions"] == want_y

    split = frame.astype(object).where(frame.notna(), None)
    bodies = {
        "dataframe_records": {"dataframe_records": rows},
        "dataframe_split": {"dataframe_split": {"columns": list(frame.columns),
                                                "data": [list(r.values()) for r in rows]}},
        "instances": {"instances": rows},
        "inputs": {"inputs": {c: [r[c] for r in rows] for c in frame.columns}},
    }
    assert len(split) == len(rows)
    for name, body in bodies.items():
        r = httpx.post(f"{server}/invocations", json=body, timeout=60)
        assert r.status_code == 200, (name, r.text)
        records = r.json()["predictions"]
        np.testing.assert_array_equal(np.array([p["probability"] for p in records]), want_p,
                                      err_msg=name)
        assert [p["prediction"] for p in records] == want_y, name

    schema = httpx.get(f"{server}/metadata", timeout=30).json()["input_schema"]
    r = httpx.post(f"{server}/v2/models/{MODEL}/infer",
                   json={"id": "parity", "inputs": _v2_inputs(frame, schema)}, timeout=60)
    assert r.status_code == 200, r.text
    outputs = {t["name"]: t for t in r.json()["outputs"]}
    assert r.json()["id"] == "parity" and outputs["prediction"]["datatype"] == "INT64"
    np.testing.assert_array_equal(np.array(outputs["probability"]["data"]), want_p)
    assert outputs["prediction"]["data"] == want_y

    # tritonclient's binary encoding has no missing value for strings and bools.
    complete = frame[["plan", "payment_method", "autopay"]].notna().all(axis=1).to_numpy()
    np.testing.assert_array_equal(_triton_probabilities(server, frame[complete], schema),
                                  want_p[complete])

    frame.assign(row_id=np.arange(len(frame))).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "preds"
    result = run_batch_inference(
        read_files(str(tmp_path / "in.parquet"), "parquet"), model_uri=f"models:/{MODEL}@champion",
        tracking_uri=cfg.tracking_uri, cfg=BatchConfig(batch_size=64, id_columns=["row_id"]),
        output_dir=str(out))
    assert result.rows_in == result.rows_predicted == len(frame) and result.rows_quarantined == 0
    batch = pd.read_parquet(out).sort_values("row_id")
    np.testing.assert_array_equal(batch["probability"].to_numpy(), want_p)
    assert batch["prediction"].tolist() == want_y
    assert set(batch["model_version"]) == {_version(trained)}


def test_mlflow_scoring_protocol_csv_and_ping(server: str) -> None:
    frame = demo_rows(5)
    r = httpx.post(f"{server}/invocations", content=frame.to_csv(index=False).encode(),
                   headers={"content-type": "text/csv"}, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5
    assert httpx.get(f"{server}/ping", timeout=30).status_code == 200
    bad = httpx.post(f"{server}/invocations", json={"dataframe_records": [{"plan": "x"}]},
                     timeout=30)
    assert bad.status_code == 400
    assert {"tenure_months", "signup_date"} <= {e["field"] for e in bad.json()["errors"]}


def test_v2_health_metadata_and_unknown_model(server: str, trained: dict[str, Any]) -> None:
    assert httpx.get(f"{server}/v2/health/live", timeout=30).json() == {"live": True}
    assert httpx.get(f"{server}/v2/health/ready", timeout=30).json() == {"ready": True}
    meta = httpx.get(f"{server}/v2/models/{MODEL}", timeout=30).json()
    assert meta["name"] == MODEL and meta["versions"] == [_version(trained)]
    types = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert types["tenure_months"] == "FP64" and types["autopay"] == "BOOL"
    assert types["plan"] == "BYTES" and types["signup_date"] == "BYTES"
    assert {o["name"] for o in meta["outputs"]} == {"prediction", "probability"}
    for path in ("/v2/models/nope", "/v2/models/nope/ready",
                 f"/v2/models/{MODEL}/versions/999"):
        assert httpx.get(f"{server}{path}", timeout=30).status_code == 404, path
    r = httpx.post(f"{server}/v2/models/nope/infer", json={"inputs": []}, timeout=30)
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_metadata_names_version_alias_schema_and_training_metrics(server: str,
                                                                  trained: dict[str, Any]) -> None:
    meta = httpx.get(f"{server}/metadata", timeout=30).json()
    assert meta["name"] == MODEL and meta["version"] == _version(trained)
    assert meta["alias"] == "champion" and meta["status"] == "ready"
    assert meta["run_id"] == trained["summary"].run_id
    assert meta["input_schema"]["tenure_months"] == {"type": "float", "required": True}
    assert meta["metrics"]["test_roc_auc"] == pytest.approx(trained["summary"].metrics["roc_auc"])
    assert meta["fast_path"] is True


def test_openapi_page_documents_every_protocol(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json", timeout=30).json()
    for path in ("/predict", "/invocations", "/v2/models/{name}/infer", "/metadata", "/readyz"):
        assert path in spec["paths"], path
    row = spec["components"]["schemas"]["InputRow"]
    assert "tenure_months" in row["properties"] and "plan" in row["required"]
    docs = httpx.get(f"{server}/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_prometheus_metrics_through_ray(server: str, trained: dict[str, Any]) -> None:
    import ray

    row = json_rows(demo_rows(1))[0]
    for _ in range(3):
        assert httpx.post(f"{server}/predict", json={"instances": [row]},
                          timeout=30).status_code == 200
    port = ray._private.worker.global_worker.node.metrics_export_port
    wanted = ['ray_raypipe_requests_total{', 'endpoint="predict"', "ray_raypipe_request_latency_ms",
              "ray_raypipe_batch_rows", "ray_raypipe_predictions_total",
              "ray_raypipe_prediction_score_total", "ray_raypipe_model_version_info"]
    text = ""
    deadline = time.time() + 60
    while time.time() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if all(w in text for w in wanted):
            break
        time.sleep(2)
    missing = [w for w in wanted if w not in text]
    assert not missing, missing
    info = [line for line in text.splitlines()
            if line.startswith("ray_raypipe_model_version_info{") and 'application="raypipe-test"'
            in line]
    assert any(f'version="{_version(trained)}"' in line and line.endswith(" 1.0") for line in info)


# --------------------------------------------------------------------------- validation


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
    row = json_rows(demo_rows(1))[0]
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


def test_wrong_content_type_gets_415(server: str) -> None:
    row = json_rows(demo_rows(1))[0]
    r = httpx.post(f"{server}/predict", data={"instances": str(row)}, timeout=30)
    assert r.status_code == 415 and "content type" in r.json()["error"]


def test_oversized_request_gets_413(server: str) -> None:
    row = json_rows(demo_rows(1))[0]
    r = httpx.post(f"{server}/predict", json={"instances": [row] * 501}, timeout=30)
    assert r.status_code == 413
    r = httpx.post(f"{server}/predict", content=b" " * (11 * 1024 * 1024),
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413
    # ...and the server still answers normally afterwards.
    assert httpx.post(f"{server}/predict", json={"instances": [row]}, timeout=30).status_code == 200


# --------------------------------------------------------------------------- explanations


def _margins(trained: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """The registered booster's margin (log-odds) on ``frame``, outside the app: the MLflow
    xgboost flavour and the fitted feature pipeline logged with it."""
    import xgboost

    from pipelines.model.engine import columns_to_frame, frame_to_columns, load_model

    mlflow.set_tracking_uri(trained["cfg"].tracking_uri)
    model = load_model(f"models:/{MODEL}@champion", check_fast_path=False)
    version = mlflow.MlflowClient().get_model_version(MODEL, model.version)
    booster = mlflow.xgboost.load_model(version.tags["raypipe.native_model_uri"])
    schema = model.pipeline.input_schema
    features = model.pipeline.transform(columns_to_frame(frame_to_columns(frame, schema),
                                                         model.spec))
    matrix = xgboost.DMatrix(features.to_numpy(), feature_names=booster.feature_names)
    return np.asarray(booster.predict(matrix, output_margin=True), dtype=np.float64)


def test_predict_explain_attributions_add_up_to_the_margin(server: str,
                                                          trained: dict[str, Any]) -> None:
    frame = demo_rows(30)
    r = httpx.post(f"{server}/predict?explain=true", json={"instances": json_rows(frame)},
                   timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["explanation_scale"] == "log_odds" and len(body["explanations"]) == 30
    assert set(body["explanations"][0]["attributions"]) == set(frame.columns)
    totals = np.array([sum(e["attributions"].values()) + e["bias"]
                       for e in body["explanations"]])
    np.testing.assert_allclose(totals, _margins(trained, frame), atol=1e-5)
    # The probabilities answered with them are the margins through the logistic link.
    np.testing.assert_allclose(1 / (1 + np.exp(-totals)), body["probabilities"], atol=1e-5)
    # Without the parameter the answer is as before.
    plain = httpx.post(f"{server}/predict", json={"instances": json_rows(frame)}, timeout=60)
    assert "explanations" not in plain.json()
    assert plain.json()["probabilities"] == body["probabilities"]


def test_predict_explain_refuses_a_bad_flag_and_too_many_rows(server: str) -> None:
    rows = json_rows(demo_rows(101))
    r = httpx.post(f"{server}/predict?explain=maybe", json={"instances": rows[:1]}, timeout=30)
    assert r.status_code == 400 and "explain must be true or false" in r.json()["error"]
    r = httpx.post(f"{server}/predict?explain=1", json={"instances": rows}, timeout=30)
    assert r.status_code == 413 and "serve.max_explain_rows" in r.json()["error"]
