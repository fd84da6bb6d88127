"""The KServe V2 (Open Inference) protocol under ``/v2``: metadata, readiness and ``infer``.

One input tensor per raw column, JSON or JSON followed by binary tensor data
(``Inference-Header-Content-Length``); one output tensor per prediction column, encoded the way
the request asked.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pipelines.features.pipeline import ColumnKind
from pipelines.model.engine import LoadedModel, Outputs, complete_columns, output_names
from pipelines.model.fastpath import Columns
from pipelines.model.spec import PREDICTION_COLUMN
from pipelines.serving.protocols.common import (
    MAX_ERRORS,
    RequestError,
    check_json_containers,
    field_path,
    nan_to_none,
)

__all__ = ["V2Request", "parse_v2_infer", "v2_infer_response", "v2_model_metadata", "v2_output_datatype"]


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

    @field_validator("inputs", mode="before")
    @classmethod
    def _at_most_one_per_column(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs on the decoded JSON list, before a tensor is validated: a request cannot make
        # the server do work per input beyond the model's column count. RequestError is not a
        # ValueError, so pydantic passes it through unchanged.
        limit = (info.context or {}).get("max_inputs")
        if limit is not None and isinstance(value, list) and len(value) > limit:
            raise RequestError(400, f"{len(value)} inputs is over the model's {limit} columns: "
                                    "send one tensor per column")
        return value


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
    schema = model.pipeline.input_schema
    check_json_containers(json_part, max_rows, len(schema))
    try:
        req = _V2Request.model_validate_json(json_part, context={"max_inputs": len(schema)})
    except ValidationError as err:
        errors = err.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise RequestError(400, f"request body is not valid JSON: {errors[0]['msg']}") from None
        fields = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors[:MAX_ERRORS]]
        raise RequestError(400, "invalid inference request: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in fields[:5]), fields) from None

    counts = Counter(t.name for t in req.inputs)
    unknown = [c for c in counts if c not in schema]
    missing = [c for c in schema if c not in counts and c not in model.pipeline.optional_columns]
    duplicated = sorted(c for c, k in counts.items() if k > 1)
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
            tensor["data"] = nan_to_none([str(v) for v in values] if datatype == "BYTES"
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
