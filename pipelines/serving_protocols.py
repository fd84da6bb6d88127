"""Wire formats of the Serve app: raypipe's /predict, MLflow's /invocations and KServe V2.

Every function here is plain Python over bytes and validated values, testable without Ray or
HTTP. A request that cannot be scored raises :class:`RequestError` with the HTTP status and a
message naming the offending field; nothing a client sends may reach the model unvalidated, so
bad input is always a 4xx, never a 5xx.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pipelines.features import ColumnKind, FeaturePipeline
from pipelines.model import PREDICTION_COLUMN, PROBABILITY_COLUMN, ModelSpec
from pipelines.serving_engine import (
    LoadedModel,
    Outputs,
    complete_columns,
    frame_to_columns,
    output_names,
)
from pipelines.serving_fastpath import Columns
from pipelines.serving_schema import frame_problems

__all__ = [
    "RequestError",
    "bearer_ok",
    "check_content_type",
    "invocations_response",
    "parse_invocations",
    "parse_predict",
    "parse_v2_infer",
    "predict_response",
    "read_token",
    "v2_infer_response",
    "v2_model_metadata",
]

MAX_ERRORS = 50
"""Field errors listed in one answer; the count says how many there were."""


class RequestError(Exception):
    """A request the server refuses: HTTP status, a message, and the offending fields."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out


# --------------------------------------------------------------------------- common checks


def check_content_type(header: str | None, accepted: tuple[str, ...] = ("application/json",)
                       ) -> str:
    """The media type of the request; 415 unless it is one of ``accepted``.

    A missing header is taken as the first accepted type (plain `curl --data-binary`).
    """
    if not header:
        return accepted[0]
    parts = [p.strip() for p in header.split(";")]
    media = parts[0].lower()
    params = dict(p.partition("=")[::2] for p in parts[1:] if p)
    charset = params.get("charset", "utf-8").strip('"').lower()
    if media not in accepted and not (media.endswith("+json") and "application/json" in accepted):
        raise RequestError(415, f"content type {media!r} is not supported; send "
                                f"{' or '.join(accepted)}")
    if charset not in ("utf-8", "utf8"):
        raise RequestError(415, f"charset {charset!r} is not supported; send UTF-8")
    return media


def check_size(raw: bytes, max_bytes: int) -> None:
    if not raw:
        raise RequestError(400, "empty request body")
    if len(raw) > max_bytes:
        raise RequestError(413, f"request body over {max_bytes} bytes")


def read_token(env_name: str | None, file: str | None) -> str | None:
    """The bearer token configured for the replicas, or None when auth is off.

    Raises ``ValueError`` when auth is configured but the token is missing or empty, so a
    misconfigured server refuses to start rather than serve without auth.
    """
    if env_name:
        token = os.environ.get(env_name, "").strip()
        if not token:
            raise ValueError(f"serve.auth_token_env: environment variable {env_name} is unset "
                             "or empty on the replica")
        return token
    if file:
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"serve.auth_token_file: {file} is not a readable file")
        token = path.read_text().strip()
        if not token:
            raise ValueError(f"serve.auth_token_file: {file} is empty")
        return token
    return None


def bearer_ok(header: str | None, token: str | None) -> bool:
    """True when auth is off or ``Authorization: Bearer <token>`` matches (constant time)."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _nan_to_none(values: list[Any]) -> list[Any]:
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]


# --------------------------------------------------------------------------- /predict


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_predict(raw: bytes, body: type[BaseModel], pipeline: FeaturePipeline,
                  max_rows: int) -> tuple[Columns, int]:
    """``{"instances": [{column: value}]}`` → columns; 400/413/422 naming the field.

    ``body`` is :func:`pipelines.serving_schema.predict_body_model` of the pipeline.
    """
    try:
        req = body.model_validate_json(raw)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise RequestError(400, f"request body is not valid JSON: {errors[0]['msg']}") from None
        if any(e["type"] == "too_long" and e["loc"] == ("instances",) for e in errors):
            raise RequestError(413, f"more than the limit of {max_rows} rows per request") from None
        if any(e["loc"] in ((), ("instances",)) for e in errors):
            raise RequestError(
                422, "the body must be an object with exactly one key, 'instances', a non-empty "
                     "list of row objects",
                [{"field": _loc(e["loc"]) or "instances", "message": e["msg"]} for e in errors[:5]],
            ) from None
        fields = [{"field": _loc(e["loc"]), "message": e["msg"]} for e in errors]
        raise RequestError(
            422, "invalid instances: " + "; ".join(f"{e['field']}: {e['message']}"
                                                   for e in fields[:5]),
            fields[:MAX_ERRORS],
        ) from None
    rows = req.instances  # type: ignore[attr-defined]
    columns: Columns = {c: [getattr(r, c) for r in rows] for c in pipeline.input_schema}
    return columns, len(rows)


def predict_response(outputs: Outputs, model: LoadedModel) -> dict[str, Any]:
    """The /predict answer: labels, probabilities (classification) and the model version."""
    task = model.pipeline.task
    body: dict[str, Any] = {
        "predictions": _nan_to_none(outputs[PREDICTION_COLUMN].tolist()),
        "model": {"name": model.name, "version": model.version},
    }
    if task == "binary":
        body["probabilities"] = _nan_to_none(outputs[PROBABILITY_COLUMN].tolist())
    elif task == "multiclass":
        classes = model.pipeline.classes or []
        per_class = {str(c): outputs[f"{PROBABILITY_COLUMN}_{c}"].tolist() for c in classes}
        n = len(outputs[PREDICTION_COLUMN])
        body["probabilities"] = [{c: v[i] for c, v in per_class.items()} for i in range(n)]
    return body


# --------------------------------------------------------------------------- /invocations

INVOCATIONS_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")


def parse_invocations(raw: bytes, content_type: str | None, model: LoadedModel,
                      max_rows: int) -> tuple[Columns, int]:
    """The MLflow scoring protocol: a JSON body with one of ``dataframe_split``,
    ``dataframe_records``, ``instances`` or ``inputs`` (and optionally ``params``, ignored as
    the model takes none), or a CSV or Parquet frame.

    The frame is built without MLflow's schema casts, which turn a missing bool into False and,
    for ``instances``/``inputs``, a missing string into the text "None"; the values are then
    checked and converted column by column, as for every other protocol.
    """
    import pandas as pd
    from mlflow.pyfunc import scoring_server as mlflow_scoring
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    media = check_content_type(content_type, INVOCATIONS_TYPES)
    try:
        if media == "text/csv":
            text_cols = {c: object for c, k in model.pipeline.input_schema.items()
                         if k == "string"}
            frame = pd.read_csv(_text_io(raw), dtype=text_cols)
        elif media == "application/vnd.apache.parquet":
            frame = pd.read_parquet(_bytes_io(raw))
        else:
            try:
                decoded = json.loads(raw)
            except (ValueError, RecursionError) as err:
                raise RequestError(400, f"request body is not valid JSON: {err}") from None
            if not isinstance(decoded, dict):
                raise RequestError(400, mlflow_scoring.REQUIRED_INPUT_FORMAT
                                   + f". Received {type(decoded).__name__}.")
            keys = set(decoded) & mlflow_scoring.SUPPORTED_FORMATS
            unknown = set(decoded) - mlflow_scoring.SUPPORTED_FORMATS - {"params"}
            if unknown or len(keys) != 1:
                raise RequestError(
                    400, mlflow_scoring.REQUIRED_INPUT_FORMAT + f". Received {sorted(decoded)}.",
                    [{"field": k, "message": "unknown key"} for k in sorted(unknown)],
                )
            key = keys.pop()
            data = decoded[key]
            _check_row_count(data, max_rows)
            if key == "dataframe_split":
                frame = dataframe_from_parsed_json(data, pandas_orient="split")
            elif key == "dataframe_records" or (
                    isinstance(data, list) and all(isinstance(r, dict) for r in data)):
                frame = dataframe_from_parsed_json(data, pandas_orient="records")
            elif isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
                frame = pd.DataFrame(data)
            else:
                raise RequestError(400, f"'{key}' must hold rows as objects or columns as "
                                        "lists: this model takes a table",
                                   [{"field": key, "message": "not tabular"}])
    except RequestError:
        raise
    except Exception as err:  # MLflow's parser raises MlflowException, pandas anything
        raise RequestError(400, f"cannot parse the input as a data frame: {_message(err)}") \
            from None
    if not isinstance(frame, pd.DataFrame):
        raise RequestError(400, "the input must be tabular: one record per row, one field per "
                                "column")
    if len(frame) > max_rows:
        raise RequestError(413, f"{len(frame)} rows is over the limit of {max_rows} per request")
    if len(frame) == 0:
        raise RequestError(400, "the input has no rows")
    frame = frame.reset_index(drop=True)
    _check_frame(frame, model.pipeline)
    columns = frame_to_columns(frame, dict(model.pipeline.input_schema))
    return complete_columns(columns, model.pipeline, len(frame)), len(frame)


def _message(err: Exception) -> str:
    return str(getattr(err, "message", None) or err).split("\n")[0][:500]


def _text_io(raw: bytes) -> Any:
    from io import StringIO

    try:
        return StringIO(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the CSV body is not UTF-8: {err}") from None


def _bytes_io(raw: bytes) -> Any:
    from io import BytesIO

    return BytesIO(raw)


def _check_row_count(data: Any, max_rows: int) -> None:
    # Refuse oversized bodies before pandas builds a frame of them.
    n = None
    if isinstance(data, list):
        n = len(data)
    elif isinstance(data, dict) and isinstance(data.get("data"), list):
        n = len(data["data"])
    elif isinstance(data, dict):
        lengths = [len(v) for v in data.values() if isinstance(v, list)]
        n = max(lengths) if lengths else None
    if n is not None and n > max_rows:
        raise RequestError(413, f"{n} rows is over the limit of {max_rows} per request")


def _check_frame(frame: Any, pipeline: FeaturePipeline) -> None:
    errors = frame_problems(frame, pipeline)
    if errors:
        raise RequestError(
            400, "invalid input: " + "; ".join(f"{e['field']}: {e['message']}"
                                               for e in errors[:5]),
            errors[:MAX_ERRORS],
        )


def invocations_response(outputs: Outputs, spec: ModelSpec) -> bytes:
    """``{"predictions": [{column: value}, ...]}``, as ``mlflow models serve`` writes it."""
    import io

    import pandas as pd
    from mlflow.pyfunc import scoring_server as mlflow_scoring

    frame = pd.DataFrame({c: outputs[c] for c in output_names(spec)})
    if PREDICTION_COLUMN in frame and frame[PREDICTION_COLUMN].dtype == object:
        frame[PREDICTION_COLUMN] = frame[PREDICTION_COLUMN].astype(object)
    buf = io.StringIO()
    mlflow_scoring.predictions_to_json(frame, buf)
    return buf.getvalue().encode()


# --------------------------------------------------------------------------- KServe V2

_V2_NUMERIC = {
    "FP64": "<f8", "FP32": "<f4", "FP16": "<f2",
    "INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "<i1",
    "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "<u1",
}
_V2_ACCEPTED: dict[ColumnKind, set[str]] = {
    "float": set(_V2_NUMERIC),
    "bool": {"BOOL"},
    "string": {"BYTES"},
    "datetime": {"BYTES"},
}
_V2_DECLARED: dict[ColumnKind, str] = {
    "float": "FP64", "bool": "BOOL", "string": "BYTES", "datetime": "BYTES",
}
HEADER_LENGTH = "inference-header-content-length"


class _V2Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(max_length=8)
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class _V2Output(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class _V2Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_V2Tensor] = Field(min_length=1)
    outputs: list[_V2Output] | None = None


_DATETIME = TypeAdapter(datetime)


def v2_output_datatype(model: LoadedModel, name: str) -> str:
    pipe = model.pipeline
    if name != PREDICTION_COLUMN or pipe.task == "regression":
        return "FP64"
    classes = pipe.classes or []
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) for c in classes):
        return "INT64"
    if all(isinstance(c, int | float) for c in classes):
        return "FP64"
    return "BYTES"


def v2_model_metadata(model: LoadedModel) -> dict[str, Any]:
    """``GET /v2/models/{name}``: one input tensor per raw column, one output per column."""
    pipe = model.pipeline
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "mlflow_pyfunc",
        "inputs": [{"name": c, "datatype": _V2_DECLARED[k], "shape": [-1]}
                   for c, k in pipe.input_schema.items()],
        "outputs": [{"name": c, "datatype": v2_output_datatype(model, c), "shape": [-1]}
                    for c in output_names(model.spec)],
    }


class V2Request:
    """A parsed inference request: the rows, and how the answer must be encoded."""

    def __init__(self, columns: Columns, n: int, request_id: str | None,
                 outputs: list[tuple[str, bool]]) -> None:
        self.columns = columns
        self.n = n
        self.id = request_id
        self.outputs = outputs
        """(name, binary) of each output to return, in order."""


def parse_v2_infer(raw: bytes, header_length: str | None, model: LoadedModel,
                   max_rows: int) -> V2Request:
    """A V2 ``infer`` body (JSON, or JSON + binary tensors) → rows by column."""
    json_part, binary = raw, b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise RequestError(400, "Inference-Header-Content-Length is not an integer") from None
        if not 0 < size <= len(raw):
            raise RequestError(400, f"Inference-Header-Content-Length {size} does not fit the "
                                    f"{len(raw)}-byte body")
        json_part, binary = raw[:size], raw[size:]
    try:
        req = _V2Request.model_validate_json(json_part)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise RequestError(400, f"request body is not valid JSON: {errors[0]['msg']}") from None
        fields = [{"field": _loc(e["loc"]), "message": e["msg"]} for e in errors[:MAX_ERRORS]]
        raise RequestError(400, "invalid inference request: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in fields[:5]), fields) from None

    schema = model.pipeline.input_schema
    names = [t.name for t in req.inputs]
    unknown = [c for c in names if c not in schema]
    missing = [c for c in schema if c not in names and c not in model.pipeline.optional_columns]
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if unknown or missing or duplicated:
        problems: list[dict[str, Any]] = (
            [{"field": f"inputs.{c}", "message": "unknown input"} for c in unknown]
            + [{"field": f"inputs.{c}", "message": "missing input"} for c in missing]
            + [{"field": f"inputs.{c}", "message": "given twice"} for c in duplicated])
        raise RequestError(400, "inputs must be one tensor per column: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in problems[:5]), problems[:MAX_ERRORS])

    columns: Columns = {}
    offset = 0
    n: int | None = None
    for t in req.inputs:
        count = _v2_count(t.name, t.shape)
        if count > max_rows:
            raise RequestError(413, f"{count} rows is over the limit of {max_rows} per request")
        if n is None:
            n = count
        elif count != n:
            raise RequestError(400, f"input {t.name!r} has {count} rows, others {n}",
                               [{"field": f"inputs.{t.name}.shape", "message": "row count"}])
        kind = schema[t.name]
        if t.datatype not in _V2_ACCEPTED[kind]:
            raise RequestError(
                400, f"input {t.name!r}: datatype {t.datatype} does not fit a {kind} column; "
                     f"send {_V2_DECLARED[kind]}",
                [{"field": f"inputs.{t.name}.datatype", "message": f"expected {_V2_DECLARED[kind]}"}],
            )
        declared: Any = (t.parameters or {}).get("binary_data_size")
        if declared is not None:
            if t.data is not None:
                raise RequestError(400, f"input {t.name!r} has both data and binary_data_size")
            if (isinstance(declared, bool) or not isinstance(declared, int) or declared < 0
                    or offset + declared > len(binary)):
                raise RequestError(400, f"input {t.name!r}: binary_data_size {declared!r} does "
                                        f"not fit the {len(binary)} bytes of binary data")
            values = _v2_from_binary(t.name, t.datatype, binary[offset:offset + declared], count)
            offset += declared
        elif t.data is not None:
            values = _flatten(t.data, t.name)
        else:
            raise RequestError(400, f"input {t.name!r} has no data")
        if len(values) != count:
            raise RequestError(400, f"input {t.name!r}: shape {t.shape} holds {count} values, "
                                    f"data has {len(values)}",
                               [{"field": f"inputs.{t.name}.data", "message": "size mismatch"}])
        columns[t.name] = _v2_values(t.name, kind, t.datatype, values)
    if offset != len(binary):
        raise RequestError(400, f"{len(binary) - offset} bytes of binary data belong to no input")
    if not n:
        raise RequestError(400, "the inputs hold no rows")

    out_names = output_names(model.spec)
    binary_all = bool((req.parameters or {}).get("binary_data_output", False))
    if req.outputs:
        wanted: list[tuple[str, bool]] = []
        for o in req.outputs:
            if o.name not in out_names:
                raise RequestError(400, f"unknown output {o.name!r}; the model has {out_names}",
                                   [{"field": f"outputs.{o.name}", "message": "unknown output"}])
            wanted.append((o.name, bool((o.parameters or {}).get("binary_data", binary_all))))
    else:
        wanted = [(c, binary_all) for c in out_names]
    return V2Request(complete_columns(columns, model.pipeline, n), n, req.id, wanted)


def _v2_count(name: str, shape: list[int]) -> int:
    if not shape or any(d < 0 for d in shape) or (len(shape) > 1 and any(d != 1 for d in shape[1:])):
        raise RequestError(400, f"input {name!r}: shape {shape} is not [rows] or [rows, 1]",
                           [{"field": f"inputs.{name}.shape", "message": "expected [rows]"}])
    return shape[0]


def _flatten(data: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                if len(stack) > 8:
                    raise RequestError(400, f"input {name!r}: data is nested too deeply")
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _v2_from_binary(name: str, datatype: str, chunk: bytes, count: int) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        pos = 0
        while pos < len(chunk):
            if pos + 4 > len(chunk):
                raise RequestError(400, f"input {name!r}: truncated BYTES element")
            (size,) = struct.unpack_from("<I", chunk, pos)
            pos += 4
            if pos + size > len(chunk):
                raise RequestError(400, f"input {name!r}: truncated BYTES element")
            values.append(chunk[pos:pos + size])
            pos += size
        return values
    dtype = "|b1" if datatype == "BOOL" else _V2_NUMERIC[datatype]
    width = np.dtype(dtype).itemsize
    if len(chunk) != width * count:
        raise RequestError(400, f"input {name!r}: {len(chunk)} bytes is not {count} x {datatype}")
    if datatype == "BOOL":
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if (raw > 1).any():
            raise RequestError(400, f"input {name!r}: BOOL bytes must be 0 or 1")
        return [bool(v) for v in raw]
    arr = np.frombuffer(chunk, dtype=dtype)
    if arr.dtype.kind == "f":
        # A NaN in a binary tensor is a missing value (JSON has null for that).
        return [None if math.isnan(v) else v for v in arr.astype(np.float64).tolist()]
    return [float(v) for v in arr.tolist()]


def _v2_values(name: str, kind: ColumnKind, datatype: str, values: list[Any]) -> list[Any]:
    # JSON `null` is a missing value in any datatype (an extension of the protocol).
    out: list[Any] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(_v2_value(kind, datatype, v))
        except (ValueError, TypeError, OverflowError, ValidationError, UnicodeDecodeError):
            raise RequestError(
                400, f"input {name!r}: element {i} ({str(v)[:40]!r}) is not a valid "
                     f"{datatype} for a {kind} column",
                [{"field": f"inputs.{name}.data.{i}", "message": f"invalid {datatype}"}],
            ) from None
    return out


def _v2_value(kind: ColumnKind, datatype: str, v: Any) -> Any:
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError("not a number")
        f = float(v)
        if not math.isfinite(f):
            raise ValueError("not finite")
        if datatype.startswith(("INT", "UINT")) and not float(v).is_integer():
            raise ValueError("not an integer")
        return f
    if kind == "bool":
        if not isinstance(v, bool):
            raise TypeError("not a bool")
        return v
    text = v.decode("utf-8") if isinstance(v, bytes) else v
    if not isinstance(text, str):
        raise TypeError("not a string")
    if kind == "datetime":
        return _DATETIME.validate_python(text)
    return text


def v2_infer_response(outputs: Outputs, model: LoadedModel, request: V2Request
                      ) -> tuple[bytes, dict[str, str]]:
    """The V2 answer: one tensor per output, JSON or binary as the request asked."""
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in request.outputs:
        values = outputs[name]
        datatype = v2_output_datatype(model, name)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [len(values)]}
        if binary:
            blob = _v2_to_binary(datatype, values)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _nan_to_none([str(v) for v in values] if datatype == "BYTES"
                                          else values.tolist())
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version,
                            "outputs": tensors}
    if request.id is not None:
        body["id"] = request.id
    header = json.dumps(body).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream",
                                      "inference-header-content-length": str(len(header))}


def _v2_to_binary(datatype: str, values: np.ndarray) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in values:
            b = str(v).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    if datatype == "BOOL":
        return np.asarray(values, dtype=bool).astype(np.uint8).tobytes()
    return np.asarray(values, dtype=_V2_NUMERIC[datatype]).tobytes()
