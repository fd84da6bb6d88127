"""Property-based: at least 1,000 generated bad requests across every endpoint; never a 5xx.

Malformed JSON, wrong types, missing and extra fields, NaN/Infinity, huge arrays, deep nesting,
wrong content types and random bytes, sent to /predict, /invocations and /v2 infer, and odd
model names, versions and query strings to every GET endpoint (the served model can never be
chosen by a request: other names are a 404); the
server must answer each with a 4xx (or a 200 where the mutation happens to stay valid) and
still serve normal requests afterwards.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.serving_helpers import MODEL, ROW, free_port

pytestmark = pytest.mark.e2e

SENT: list[int] = []
BY_ENDPOINT: defaultdict[str, Counter[int]] = defaultdict(Counter)

V2_TYPES = {"customer_id": "BYTES", "signup_date": "BYTES", "last_login": "BYTES",
            "tenure_months": "FP64", "monthly_charges": "FP64", "total_charges": "FP64",
            "support_calls": "FP64", "plan": "BYTES", "region": "BYTES",
            "payment_method": "BYTES", "autopay": "BOOL"}


@pytest.fixture(scope="module")
def client(trained: dict[str, Any]) -> Iterator[httpx.Client]:
    from ray import serve

    from pipelines.serving import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"model_uri": f"models:/{MODEL}@champion",
                         "tracking_uri": trained["cfg"].tracking_uri, "max_request_rows": 200,
                         "max_body_bytes": 1_000_000, "model_poll_interval_s": 0}),
              name="raypipe-fuzz", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        yield c
    serve.shutdown()


# --------------------------------------------------------------------------- strategies

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["NaN", "Infinity", "-Infinity", "", "2021-13-45", "\x00"]))
_json = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
_columns = st.sampled_from([*ROW, "favourite_colour", "", "instances", "inputs"])


@st.composite
def _bad_row(draw: st.DrawFn) -> dict[str, Any]:
    row = dict(ROW)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "drop", "add"]))
        col = draw(_columns)
        if action == "drop":
            row.pop(col, None)
        else:
            row[col] = draw(_json)
    return row


def _dump(obj: Any) -> bytes:
    # allow_nan: Python's json writes NaN/Infinity tokens, which strict JSON forbids.
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def _predict_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["rows", "json", "bytes", "huge", "nested", "truncated"]))
    if kind == "rows":
        return _dump({"instances": draw(st.lists(_bad_row(), min_size=1, max_size=3))})
    if kind == "json":
        return _dump(draw(_json))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "huge":
        return _dump({"instances": [ROW] * draw(st.integers(201, 400))})
    if kind == "nested":
        depth = draw(st.integers(50, 3000))
        return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    text = _dump({"instances": [ROW]})
    return text[:draw(st.integers(0, len(text) - 1))]


@st.composite
def _invocations_body(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(_bad_row(), min_size=1, max_size=3))
    kind = draw(st.sampled_from(["dataframe_records", "dataframe_split", "instances", "inputs",
                                 "two-keys", "json", "bytes"]))
    if kind == "dataframe_split":
        cols = sorted({c for r in rows for c in r})
        data = draw(st.one_of(st.just([[r.get(c) for c in cols] for r in rows]), _json))
        return _dump({kind: {"columns": cols, "data": data}})
    if kind == "inputs":
        return _dump({kind: draw(st.one_of(st.just({c: [v] for c, v in rows[0].items()}),
                                           _json))})
    if kind == "two-keys":
        return _dump({"dataframe_records": rows, "instances": rows})
    if kind == "json":
        return _dump(draw(_json))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    return _dump({kind: rows})


@st.composite
def _v2_body(draw: st.DrawFn) -> bytes:
    inputs = [{"name": c, "datatype": V2_TYPES[c], "shape": [1], "data": [v]}
              for c, v in ROW.items()]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(inputs) - 1))
        field = draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters", "drop"]))
        if field == "drop":
            inputs.pop(i)
            if not inputs:
                break
        elif field == "parameters":
            inputs[i]["parameters"] = {"binary_data_size": draw(_json)}
        else:
            inputs[i][field] = draw(_json)
    return _dump({"inputs": inputs, **draw(st.fixed_dictionaries(
        {}, optional={"outputs": _json, "id": _json, "parameters": _json}))})


_segment = st.one_of(st.just(MODEL), st.text(max_size=12).map(lambda t: quote(t, safe="")),
                     st.sampled_from(["..%2F..%2Fetc%2Fpasswd", "%00", "models:%2F%2Fx@champion"]))
_GETS = ["/healthz", "/readyz", "/metadata", "/ping", "/health", "/v2", "/v2/health/live",
         "/v2/health/ready", "/openapi.json"]


@st.composite
def _get_path(draw: st.DrawFn) -> str:
    """Every GET endpoint, with odd model names and versions and junk query strings."""
    name, version = draw(_segment), draw(_segment)
    path = draw(st.sampled_from([*_GETS, f"/v2/models/{name}", f"/v2/models/{name}/ready",
                                 f"/v2/models/{name}/versions/{version}",
                                 f"/v2/models/{name}/versions/{version}/ready"]))
    query = draw(st.one_of(st.just(""), st.dictionaries(
        st.sampled_from(["model_uri", "version", "path", "x"]), st.text(max_size=10),
        max_size=2).map(lambda q: "?" + urlencode(q))))
    return path + query


_request = st.one_of(
    st.tuples(st.just("POST"), st.just("/predict"), _predict_body()),
    st.tuples(st.just("POST"), st.just("/invocations"), _invocations_body()),
    st.tuples(st.just("POST"), st.just(f"/v2/models/{MODEL}/infer"), _v2_body()),
    st.tuples(st.just("POST"), st.builds(lambda n, v: f"/v2/models/{n}/versions/{v}/infer",
                                         _segment, _segment), _v2_body()),
    st.tuples(st.just("POST"), _segment.map(lambda n: f"/v2/models/{n}/infer"), _v2_body()),
    st.tuples(st.just("GET"), _get_path(), st.binary(max_size=32)),
)
_content_type = st.sampled_from(["application/json", "application/json", "application/json",
                                 "text/csv", "text/plain", "application/x-www-form-urlencoded",
                                 "application/json; charset=latin-1", "application/octet-stream",
                                 "", "multipart/form-data; boundary=x"])


@settings(max_examples=1300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(request=_request, content_type=_content_type,
       v2_header=st.one_of(st.none(), st.integers(-5, 5000).map(str),
                           st.from_regex(r"[!-~]{1,4}", fullmatch=True)))
def test_generated_bad_requests_never_get_a_5xx(client: httpx.Client,
                                               request: tuple[str, str, bytes],
                                               content_type: str, v2_header: str | None) -> None:
    method, path, body = request
    headers = {"content-type": content_type} if content_type else {}
    if path.startswith("/v2") and v2_header is not None:
        headers["inference-header-content-length"] = v2_header
    r = client.request(method, path, content=body, headers=headers)
    SENT.append(r.status_code)
    endpoint = path.split("?")[0]
    if endpoint.startswith("/v2/models/"):
        endpoint = "/v2/models/{name}" + ("/infer" if endpoint.endswith("/infer") else
                                          "/ready" if endpoint.endswith("/ready") else "")
    BY_ENDPOINT[f"{method} {endpoint}"][r.status_code // 100] += 1
    assert r.status_code < 500, (path, body[:300], headers, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json")
        assert "error" in r.json()


def test_server_is_alive_after_the_storm(client: httpx.Client) -> None:
    print(f"\nHTTP fuzz: {len(SENT)} generated requests, {sum(s >= 500 for s in SENT)} answered "
          f"5xx, {sum(400 <= s < 500 for s in SENT)} 4xx, {sum(s < 400 for s in SENT)} 2xx/3xx")
    for endpoint, classes in sorted(BY_ENDPOINT.items()):
        print(f"  {endpoint}: " + ", ".join(f"{k}xx {n}" for k, n in sorted(classes.items())))
    assert len(SENT) >= 1000, len(SENT)
    posts = {e for e in BY_ENDPOINT if e.startswith("POST")}
    assert {"POST /predict", "POST /invocations", "POST /v2/models/{name}/infer"} <= posts
    assert sum(e.startswith("GET") for e in BY_ENDPOINT) >= len(_GETS)  # every GET endpoint
    assert all(s < 500 for s in SENT)
    post = [c for e, c in BY_ENDPOINT.items() if e.startswith("POST")]
    post_4xx, post_all = sum(c[4] for c in post), sum(sum(c.values()) for c in post)
    assert post_4xx > 0.9 * post_all  # the generator made bad requests
    assert client.get("/healthz").status_code == 200
    r = client.post("/predict", json={"instances": [ROW]})
    assert r.status_code == 200 and r.json()["predictions"][0] in (0, 1)
