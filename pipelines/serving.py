"""Online inference: a Ray Serve application with a FastAPI ingress.

``build_app(args)`` is an application builder, so ``serve run pipelines.serving:build_app
model_uri=...``, a Serve config file, ``raypipe serve`` and a KubeRay RayService all start the
same thing. Requests are validated against the model's input schema before they reach the
model: a missing, unknown or mistyped column is answered with HTTP 422 naming the field.
"""


# No `from __future__ import annotations` here: FastAPI must see the real `Request` type
# of the endpoint methods after Serve's ingress has rewrapped them.
import json
import logging
from datetime import datetime
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from ray import serve

from pipelines.features import ColumnKind, FeaturePipeline
from pipelines.model import PREDICTION_COLUMN, PROBABILITY_COLUMN, conform_input

__all__ = ["ServeArgs", "build_app", "resolve_version", "row_model"]

logger = logging.getLogger(__name__)

_PY_TYPES: dict[ColumnKind, Any] = {
    "float": float, "bool": bool, "string": str, "datetime": datetime,
}


class ServeArgs(BaseModel):
    """Arguments of the application builder (strings from the CLI or a Serve config file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_uri: str
    tracking_uri: str | None = None
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(0.5, gt=0)
    max_batch_size: int = Field(64, ge=1)
    batch_wait_timeout_s: float = Field(0.005, ge=0)
    max_request_rows: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)


def row_model(pipeline: FeaturePipeline) -> type[BaseModel]:
    """A pydantic model of one raw input row: every column present (null allowed), no others.

    Columns the model never uses (``optional_columns``) may be left out.
    """
    fields: dict[str, Any] = {}
    for name, kind in pipeline.input_schema.items():
        typ = _PY_TYPES[kind] | None
        fields[name] = (typ, None) if name in pipeline.optional_columns else (typ, ...)
    return create_model(
        "InputRow", __config__=ConfigDict(extra="forbid"), **fields
    )


def resolve_version(model_uri: str) -> tuple[str, str]:
    """(name, version) of a ``models:/name@alias`` or ``models:/name/version`` URI."""
    from mlflow import MlflowClient

    if not model_uri.startswith("models:/"):
        return model_uri, "unregistered"
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
    name, _, version = ref.partition("/")
    return name, version or "latest"


def _error(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(status_code=status, content=body)


def _field_errors(err: ValidationError, row: int) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in ("instances", row, *e["loc"])), "message": e["msg"]}
        for e in err.errors()
    ]


api = FastAPI(title="raypipe model server", version="1")


@serve.deployment(max_ongoing_requests=64)
@serve.ingress(api)
class ModelServer:
    """One replica: the MLflow pyfunc model, loaded once, behind a validating HTTP API."""

    def __init__(self, args: dict[str, Any]) -> None:
        import mlflow

        self.args = ServeArgs.model_validate(args)
        if self.args.tracking_uri:
            mlflow.set_tracking_uri(self.args.tracking_uri)
        self.model = mlflow.pyfunc.load_model(self.args.model_uri)
        self.spec = self.model.unwrap_python_model().spec
        self.name, self.version = resolve_version(self.args.model_uri)
        self.row_model = row_model(self.spec.pipeline)
        # serve.batch wraps the method in an object that carries these setters.
        self._predict_batch.set_max_batch_size(self.args.max_batch_size)  # type: ignore[attr-defined]
        self._predict_batch.set_batch_wait_timeout_s(  # type: ignore[attr-defined]
            self.args.batch_wait_timeout_s
        )
        logger.info("serving %s version %s", self.name, self.version)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _predict_batch(self, frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
        # One model call for many requests; the split below hands each its own rows back.
        sizes = [len(f) for f in frames]
        preds = self.model.predict(pd.concat(frames, ignore_index=True))
        out, start = [], 0
        for n in sizes:
            out.append(preds.iloc[start:start + n].reset_index(drop=True))
            start += n
        return out

    def _parse(self, raw: bytes) -> pd.DataFrame | JSONResponse:
        if not raw:
            return _error(400, "empty request body; send {\"instances\": [{column: value}]}")
        if len(raw) > self.args.max_body_bytes:
            return _error(413, f"request body over {self.args.max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return _error(400, f"request body is not valid JSON: {err}")
        if not isinstance(body, dict) or set(body) != {"instances"}:
            return _error(422, "the body must be an object with exactly one key, 'instances'",
                          [{"field": "instances", "message": "required"}])
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            return _error(422, "'instances' must be a non-empty list of row objects",
                          [{"field": "instances", "message": "must be a non-empty list"}])
        if len(rows) > self.args.max_request_rows:
            return _error(413, f"{len(rows)} rows is over the limit of "
                               f"{self.args.max_request_rows} per request")
        records, errors = [], []
        for i, row in enumerate(rows):
            try:
                records.append(self.row_model.model_validate(row).model_dump())
            except ValidationError as err:
                errors += _field_errors(err, i)
        if errors:
            return _error(422, "invalid instances: " + "; ".join(
                f"{e['field']}: {e['message']}" for e in errors[:5]), errors)
        frame = pd.DataFrame.from_records(records, columns=list(self.spec.pipeline.input_schema))
        return conform_input(frame, self.spec)

    @api.post("/predict")
    async def predict(self, request: Request) -> Any:
        parsed = self._parse(await request.body())
        if isinstance(parsed, JSONResponse):
            return parsed
        preds = await self._predict_batch(parsed)
        body: dict[str, Any] = {
            "predictions": preds[PREDICTION_COLUMN].tolist(),
            "model": {"name": self.name, "version": self.version},
        }
        if self.spec.pipeline.task == "binary":
            body["probabilities"] = preds[PROBABILITY_COLUMN].tolist()
        elif self.spec.pipeline.task == "multiclass":
            classes = self.spec.pipeline.classes or []
            body["probabilities"] = [
                {str(c): float(r[f"{PROBABILITY_COLUMN}_{c}"]) for c in classes}
                for _, r in preds.iterrows()
            ]
        return body

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model": {"name": self.name, "version": self.version}}


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: ``serve run pipelines.serving:build_app model_uri=...``."""
    parsed = ServeArgs.model_validate(args)
    return ModelServer.options(  # type: ignore[attr-defined]
        num_replicas=parsed.num_replicas,
        ray_actor_options={"num_cpus": parsed.num_cpus_per_replica},
    ).bind(parsed.model_dump())
