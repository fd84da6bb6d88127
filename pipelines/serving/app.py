"""Online inference: one Ray Serve application with a FastAPI ingress.

``build_app(args)`` is an application builder, so ``serve run pipelines.serving:build_app
model_uri=...``, a Serve config file, ``raypipe serve`` and a KubeRay RayService all start the
same thing. One deployment answers three protocols from the same model and the same code path:

- ``POST /predict`` — raypipe's own ``{"instances": [{column: value}]}``;
- ``POST /invocations`` (+ ``GET /ping``, ``/health``) — MLflow's scoring protocol, so clients
  of ``mlflow models serve`` work unchanged;
- ``/v2/...`` — the KServe V2 / Open Inference Protocol (JSON and binary tensors), so V2 clients
  such as ``tritonclient`` work unchanged;

plus ``GET /healthz`` (liveness), ``/readyz`` (model loaded; ``degraded`` when a newer version
failed to load), ``/metadata`` and the OpenAPI page at ``/docs``.

Requests are validated against the model's input schema before they reach the model: a
missing, unknown or mistyped column is a 4xx naming the field. Small requests are combined
by ``@serve.batch`` into one model call; replicas follow the registry alias and swap model
versions in place (:mod:`pipelines.serving.swap`).
"""


# No `from __future__ import annotations` here: FastAPI must see the real `Request` type
# of the endpoint methods after Serve's ingress has rewrapped them.
import asyncio
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, field_validator
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.config import RequestLogConfig, ServeConfig, parse_model_uri
from pipelines.model.engine import (
    LoadedModel,
    Outputs,
    explain_columns,
    family_of,
    output_names,
    predict_columns,
)
from pipelines.model.explain import ExplanationsUnsupportedError, check_explainable
from pipelines.model.fastpath import Columns
from pipelines.model.schema import predict_body_model, row_model
from pipelines.serving.protocols import (
    RequestError,
    V2Request,
    bearer_ok,
    check_content_type,
    check_size,
    explanations_body,
    invocations_response,
    parse_explain,
    parse_invocations,
    parse_predict,
    parse_v2_infer,
    predict_response,
    read_token,
    v2_infer_response,
    v2_model_metadata,
)

__all__ = ["ServeArgs", "build_app", "deployment_options", "resolve_version", "row_model"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


_INLINE_PARSE_BYTES = 16 * 1024
"""Bodies up to this size are parsed on the event loop: their parse costs tens of microseconds,
less than the hop to a worker thread, and one-row requests are the latency-critical ones."""


async def _off_loop(raw: bytes, parse: Callable[..., _T], *args: Any) -> _T:
    """``parse(*args)`` in a worker thread unless ``raw`` is small.

    Parsing and validating a large body takes milliseconds to seconds (bounded by its size,
    but still long): on the event loop it would stall every other request of the replica,
    health probes included. Defined above the deployment class: ``serve.ingress`` captures
    the class's globals when the class is defined.
    """
    if len(raw) <= _INLINE_PARSE_BYTES:
        return parse(*args)
    return await asyncio.to_thread(parse, *args)


class ServeArgs(ServeConfig):
    """Arguments of the application builder: the ``serve:`` config section plus the model.

    From the CLI or a Serve config file every value may arrive as a string; pydantic parses it.
    ``config`` names a pipeline YAML whose ``serve:`` and ``tracking:`` sections give the
    defaults (what a RayService's ``args`` usually point at).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_uri: str
    tracking_uri: str | None = None
    request_log: RequestLogConfig | None = None
    """Request logging (the pipeline's ``monitor.request_log``); off when None."""
    request_log_path: str | None = None
    """Where request logs go (default with ``config=``: the pipeline's request log folder)."""

    @field_validator("model_uri")
    @classmethod
    def _check_model_uri(cls, v: str) -> str:
        # Serve config files and RayServices reach the builder without the CLI's check.
        parse_model_uri(v)
        return v


def resolve_version(model_uri: str) -> tuple[str, str]:
    """(name, version) of a ``models:/name@alias`` or ``models:/name/version`` URI."""
    from pipelines.model.engine import resolve_model

    ref = resolve_model(model_uri)
    return ref.name, ref.version


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """The Serve deployment options a ``serve:`` config section stands for (the one place)."""
    opts: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cfg.num_cpus_per_replica},
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
        "backpressure_config": {"status_code": 503,
                                "retry_after_s": cfg.overload_retry_after_s},
        # Replicas load a model in __init__; a slow store must not get them killed.
        "health_check_timeout_s": 60,
    }
    if cfg.autoscaling:
        opts["num_replicas"] = "auto"
        opts["autoscaling_config"] = {
            "min_replicas": cfg.min_replicas,
            "initial_replicas": cfg.num_replicas,
            "max_replicas": cfg.max_replicas,
            "target_ongoing_requests": cfg.target_ongoing_requests,
            "upscale_delay_s": cfg.upscale_delay_s,
            "downscale_delay_s": cfg.downscale_delay_s,
        }
    else:
        opts["num_replicas"] = cfg.num_replicas
    return opts


# --------------------------------------------------------------------------- the replica


class _Served:
    """A loaded model with what the request parsers need of it, built once per version."""

    def __init__(self, model: LoadedModel, max_rows: int) -> None:
        self.model = model
        self.body = predict_body_model(model.pipeline, max_rows)
        self.v2_metadata = v2_model_metadata(model)


class _Work:
    """One request's rows waiting in the batch queue, with the model they were checked for."""

    __slots__ = ("columns", "model", "n")

    def __init__(self, model: LoadedModel, columns: Columns, n: int) -> None:
        self.model = model
        self.columns = columns
        self.n = n


def _rows(items: list[_Work]) -> int:
    return sum(w.n for w in items)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body).encode(), status_code=status, headers=headers,
                    media_type="application/json")


def _error(err: RequestError) -> Response:
    return _json(err.body(), err.status, err.headers or None)


def _predict_alone(model: LoadedModel, work: _Work) -> Outputs | Exception:
    try:
        return predict_columns(model, work.columns, work.n)
    except Exception as err:
        logger.warning("cannot score a request of %d rows: %s", work.n, err)
        return RequestError(422, f"the model cannot score these rows: {type(err).__name__}: "
                                 f"{str(err)[:300]}")


def _check_explain(model: LoadedModel) -> None:
    try:
        check_explainable(family_of(model))
    except ExplanationsUnsupportedError as err:
        raise RequestError(422, str(err)) from None


def _document(app: FastAPI, served: _Served) -> None:
    """Put the served model's row schema into the OpenAPI page (/docs, /openapi.json)."""
    try:
        app.openapi_schema = None
        schema = app.openapi()
        body = served.body.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = body.pop("$defs", {})
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs)
        components["PredictRequest"] = body
        app.openapi_schema = schema
    except Exception as err:  # documentation must never stop a replica
        logger.warning("cannot document the request schema: %s", err)


_OPEN = frozenset({"healthz", "readyz", "ping", "v2_live", "v2_ready"})
"""Endpoints answered without a token: probes of load balancers and Kubernetes."""

REQUEST_ID_HEADER = "X-Request-ID"
_MAX_REQUEST_ID = 128


def request_id(given: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one.

    Behind Serve's HTTP proxy every request carries one: the proxy keeps the caller's or
    makes one, and returns it in the response's X-Request-ID header itself.
    """
    if given and len(given) <= _MAX_REQUEST_ID and given.isprintable() and given.isascii():
        return given
    return uuid.uuid4().hex


def _request_logger(args: ServeArgs, metrics: Any) -> Any:
    cfg = args.request_log
    if cfg is None or not cfg.enabled or cfg.sample_rate <= 0:
        return None
    if not args.request_log_path:
        logger.warning("request logging is on but no request_log_path is set: not logging")
        return None
    from pipelines.monitoring.request_log import RequestLogger

    return RequestLogger(cfg, args.request_log_path, on_drop=metrics.log_dropped,
                         on_write=metrics.log_written)


_Route = Callable[..., Awaitable[Response]]


def _endpoint(name: str) -> Callable[[_Route], _Route]:
    """Run a :class:`ModelServer` route through the plumbing every route shares.

    The route's body runs inside :meth:`ModelServer._answer` under the metrics name ``name``:
    a request id, the bearer token (unless ``name`` is open, see ``_OPEN``), the
    ``request_timeout_s`` limit, the error shape of every status and the request metrics.
    ``functools.wraps`` keeps the route's own signature, which FastAPI reads (after Serve's
    ingress turns ``self`` into the replica) to pass the request and the path parameters.
    """

    def decorate(route: _Route) -> _Route:
        @functools.wraps(route)
        async def answered(self: Any, request: Request, **params: Any) -> Response:
            return await self._answer(name, request,
                                      partial(route, self, request=request, **params))

        return answered

    return decorate


api = FastAPI(
    title="raypipe model server", version="2",
    description="Predictions of a registered raypipe model: raypipe's /predict, MLflow's "
                "/invocations and the KServe V2 inference protocol under /v2.",
)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # Unrouted paths and methods (404, 405) answer in the app's error shape, as every other 4xx.
    return _json({"error": str(exc.detail)}, exc.status_code, dict(exc.headers or {}) or None)


@serve.deployment(max_ongoing_requests=64)
@serve.ingress(api)
class ModelServer:
    """One replica: the model, loaded once and swapped in place, behind a validating HTTP API."""

    def __init__(self, args: dict[str, Any]) -> None:
        import mlflow

        from pipelines.serving.metrics import ServingMetrics
        from pipelines.serving.swap import ModelSlot

        self.args = ServeArgs.model_validate(args)
        if self.args.tracking_uri:
            mlflow.set_tracking_uri(self.args.tracking_uri)
        self.token = read_token(self.args.auth_token_env, self.args.auth_token_file)
        self.metrics = ServingMetrics()
        self.served: _Served | None = None
        self._store_timeouts()
        self.slot = ModelSlot(self.args.model_uri, poll_interval_s=self.args.model_poll_interval_s,
                              on_swap=self._swapped, on_fail=self.metrics.swap_failed,
                              retry_interval_s=self.args.model_retry_interval_s)
        # serve.batch wraps the method in an object that carries these setters.
        self._predict_batch.set_max_batch_size(self.args.max_batch_size)  # type: ignore[attr-defined]
        self._predict_batch.set_batch_wait_timeout_s(  # type: ignore[attr-defined]
            self.args.batch_wait_timeout_s
        )
        self.request_log = _request_logger(self.args, self.metrics)
        self.slot.start()
        if self.served is not None:
            logger.info("serving %s version %s (auth %s)", self.served.model.name,
                        self.served.model.version, "on" if self.token else "off")

    @staticmethod
    def _store_timeouts() -> None:
        # MLflow's REST client retries a dead tracking server 7 times with exponential backoff
        # (minutes); a replica should notice an outage within seconds and report it, since its
        # poll loop retries anyway. Settings given to the replica's environment win.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

    def _model(self) -> _Served:
        """The served model, or a 503 (with Retry-After) while none could be loaded yet."""
        served = self.served
        if served is None:
            raise RequestError(503, f"no model loaded yet: {self.slot.error}",
                               headers={"Retry-After": str(max(1, round(
                                   self.args.model_retry_interval_s)))})
        return served

    def _swapped(self, old: LoadedModel | None, new: LoadedModel) -> None:
        self.served = _Served(new, self.args.max_request_rows)
        self.metrics.swapped(old, new)
        _document(api, self.served)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve ``user_config``: ``{"model_uri": ...}`` re-targets the replica in place."""
        uri = (user_config or {}).get("model_uri")
        if uri and uri != self.slot.model_uri:
            await asyncio.to_thread(self.slot.retarget, str(uri))

    def __del__(self) -> None:
        slot = getattr(self, "slot", None)
        if slot is not None:
            slot.stop()
        request_log = getattr(self, "request_log", None)
        if request_log is not None:  # Serve calls __del__ on shutdown: write the queue out
            request_log.close()

    # ---------------------------------------------------------------- plumbing

    async def _answer(self, endpoint: str, request: Request,
                      handler: Callable[[], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        given = request.headers.get(REQUEST_ID_HEADER)
        rid = request_id(given)
        # Read back by request logging; request.state lives exactly as long as the request.
        request.state.raypipe_request = (rid, time.time())
        try:
            if endpoint not in _OPEN and not bearer_ok(request.headers.get("authorization"),
                                                       self.token):
                raise RequestError(401, "missing or invalid bearer token",
                                   headers={"WWW-Authenticate": "Bearer"})
            response = await asyncio.wait_for(handler(), self.args.request_timeout_s)
        except TimeoutError:
            response = _json({"error": f"request not answered within serve.request_timeout_s="
                                       f"{self.args.request_timeout_s:g} s"}, 504)
        except RequestError as err:
            response = _error(err)
        except Exception:
            logger.exception("%s failed", endpoint)
            response = _json({"error": "internal error; see the replica log"}, 500)
        if rid != given:  # else the caller (or Serve's proxy, which echoes it) has it already
            response.headers[REQUEST_ID_HEADER] = rid
        self.metrics.request(endpoint, response.status_code, time.perf_counter() - t0)
        return response

    async def _body(self, request: Request) -> bytes:
        limit = self.args.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body over {limit} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        check_size(raw, limit)
        return raw

    async def _predict(self, model: LoadedModel, columns: Columns, n: int,
                       request: Request) -> Outputs:
        if n > self.args.max_batch_size:
            # Big enough to be its own batch: skip the queue, keep the event loop free.
            outputs = await asyncio.to_thread(predict_columns, model, columns, n)
            self.metrics.batch(n)
        else:
            result = await self._predict_batch(_Work(model, columns, n))
            if isinstance(result, Exception):
                raise result
            outputs = result
        self.metrics.predicted(model, outputs)
        if self.request_log is not None and self.request_log.sampled():
            self._log_request(model, columns, outputs, n, request)
        return outputs

    def _log_request(self, model: LoadedModel, columns: Columns, outputs: Outputs,
                     n: int, request: Request) -> None:
        from pipelines.monitoring.request_log import LogRecord

        rid, arrived = getattr(request.state, "raypipe_request", (uuid.uuid4().hex, time.time()))
        try:
            self.request_log.log(LogRecord(
                request_id=rid, timestamp=arrived, model_version=model.version,
                schema=model.pipeline.input_schema, columns=columns, outputs=outputs, n=n))
        except Exception:  # logging must never fail a request
            logger.exception("cannot queue a request log record")

    @serve.batch(max_batch_size=256, batch_wait_timeout_s=0.0, batch_size_fn=_rows)
    async def _predict_batch(self, works: list[_Work]) -> list[Outputs | Exception]:
        # One model call for many requests; each gets its own rows back. Requests checked
        # against different model versions (during a swap) are predicted by their own version.
        results: list[Outputs | Exception | None] = [None] * len(works)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(works):
            groups.setdefault(id(w.model), []).append(i)
        for idx in groups.values():
            model = works[idx[0]].model
            n = sum(works[i].n for i in idx)
            try:
                columns = {c: list(chain.from_iterable(works[i].columns[c] for i in idx))
                           for c in works[idx[0]].columns}
                merged = predict_columns(model, columns, n)
            except Exception:
                # One request's rows broke the shared call; score each alone to find it.
                for i in idx:
                    results[i] = _predict_alone(model, works[i])
                continue
            start = 0
            for i in idx:
                end = start + works[i].n
                results[i] = {k: v[start:end] for k, v in merged.items()}
                start = end
            self.metrics.batch(n)
        return [r if r is not None else RuntimeError("no result") for r in results]

    # ---------------------------------------------------------------- raypipe

    @api.post("/predict", summary="Predict rows: {\"instances\": [{column: value}]}",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
              }}})
    @_endpoint("predict")
    async def predict(self, request: Request) -> Response:
        explain = parse_explain(request.query_params.get("explain"))
        check_content_type(request.headers.get("content-type"))
        raw = await self._body(request)
        served = self._model()
        if explain:
            _check_explain(served.model)
        columns, n = await _off_loop(raw, parse_predict, raw, served.body, served.model.pipeline,
                                     self.args.max_request_rows)
        if explain and n > self.args.max_explain_rows:
            raise RequestError(413, f"explain=true takes at most {self.args.max_explain_rows} "
                                    f"rows per request (serve.max_explain_rows); this one has {n}")
        outputs = await self._predict(served.model, columns, n, request)
        body = predict_response(outputs, served.model)
        if explain:
            # Off the event loop: attributions cost far more than predictions.
            explanation = await asyncio.to_thread(explain_columns, served.model, columns)
            body.update(explanations_body(explanation))
        return _json(body)

    @api.get("/healthz", summary="Liveness: the replica answers")
    @_endpoint("healthz")
    async def healthz(self, request: Request) -> Response:
        # Alive even without a model: restarting the replica would not bring the store back.
        if self.served is None:
            return _json({"status": "ok", "model": None})
        model = self.served.model
        return _json({"status": "ok", "model": {"name": model.name, "version": model.version}})

    @api.get("/readyz", summary="Readiness: a model is loaded (degraded: a newer one failed)")
    @_endpoint("readyz")
    async def readyz(self, request: Request) -> Response:
        # Probes are open to anyone who reaches the port: a coarse reason only. The load
        # error itself (credentials masked) is in /metadata, behind the token.
        if self.served is None:
            return _json({"status": "not_ready", "model": None, "reason": self.slot.reason}, 503)
        model = self.served.model
        body: dict[str, Any] = {
            "status": "degraded" if self.slot.degraded else "ready",
            "model": {"name": model.name, "version": model.version},
        }
        if self.slot.degraded:
            body["reason"] = self.slot.reason
        return _json(body)

    @api.get("/metadata", summary="Model name, version, alias, input schema, training metrics")
    @_endpoint("metadata")
    async def metadata(self, request: Request) -> Response:
        model = self._model().model
        pipe = model.pipeline
        return _json({
            "name": model.name,
            "version": model.version,
            "alias": model.ref.alias,
            "model_uri": self.slot.model_uri,
            "version_uri": model.ref.uri,
            "run_id": model.ref.run_id,
            "status": "degraded" if self.slot.degraded else "ready",
            "error": self.slot.error,
            "loaded_at": datetime.fromtimestamp(model.loaded_at, UTC).isoformat(),
            "task": pipe.task,
            "classes": pipe.classes,
            "threshold": model.spec.threshold,
            "family": getattr(model.spec, "family", None),
            "input_schema": {c: {"type": k, "required": c not in pipe.optional_columns}
                             for c, k in pipe.input_schema.items()},
            "outputs": output_names(model.spec),
            "metrics": model.metrics,
            "fast_path": model.compiled is not None,
            "poll_interval_s": self.slot.poll_interval_s if self.slot.follows_registry else 0,
            "swaps": self.slot.swaps,
        })

    # ---------------------------------------------------------------- MLflow scoring protocol

    @api.post("/invocations", summary="MLflow scoring protocol (as `mlflow models serve`)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object", "description":
                      "One of dataframe_split, dataframe_records, instances, inputs"}},
                  "text/csv": {"schema": {"type": "string"}},
              }}})
    @_endpoint("invocations")
    async def invocations(self, request: Request) -> Response:
        raw = await self._body(request)
        served = self._model()
        columns, n = await _off_loop(raw, parse_invocations, raw,
                                     request.headers.get("content-type"), served.model,
                                     self.args.max_request_rows)
        outputs = await self._predict(served.model, columns, n, request)
        return Response(invocations_response(outputs, served.model.spec),
                        media_type="application/json")

    @api.get("/ping", summary="MLflow scoring server health check")
    @_endpoint("ping")
    async def ping(self, request: Request) -> Response:
        return Response("\n", media_type="application/json")

    @api.get("/health", summary="MLflow scoring server health check", include_in_schema=False)
    async def health(self, request: Request) -> Response:
        return await self.ping(request)

    # ---------------------------------------------------------------- KServe V2

    @api.get("/v2", summary="V2 server metadata")
    @_endpoint("v2_server")
    async def v2_server(self, request: Request) -> Response:
        return _json({"name": "raypipe", "version": "2", "extensions": ["binary_tensor_data"]})

    @api.get("/v2/health/live", summary="V2 liveness")
    @_endpoint("v2_live")
    async def v2_live(self, request: Request) -> Response:
        return _json({"live": True})

    @api.get("/v2/health/ready", summary="V2 readiness")
    @_endpoint("v2_ready")
    async def v2_ready(self, request: Request) -> Response:
        ready = self.served is not None
        return _json({"ready": ready}, 200 if ready else 503)

    def _v2_served(self, name: str, version: str | None) -> _Served:
        served = self._model()
        if name != served.model.name or (version is not None and version != served.model.version):
            wanted = f"{name} version {version}" if version else name
            raise RequestError(404, f"model {wanted!r} is not served here; this server serves "
                                    f"{served.model.name!r} version {served.model.version}")
        return served

    @api.get("/v2/models/{name}", summary="V2 model metadata")
    @_endpoint("v2_metadata")
    async def v2_model(self, name: str, request: Request) -> Response:
        return _json(self._v2_served(name, None).v2_metadata)

    @api.get("/v2/models/{name}/versions/{version}", summary="V2 model metadata (version)")
    @_endpoint("v2_metadata")
    async def v2_model_version(self, name: str, version: str, request: Request) -> Response:
        return _json(self._v2_served(name, version).v2_metadata)

    @api.get("/v2/models/{name}/ready", summary="V2 model readiness")
    @_endpoint("v2_metadata")
    async def v2_model_ready(self, name: str, request: Request) -> Response:
        return _json({"name": self._v2_served(name, None).model.name, "ready": True})

    @api.get("/v2/models/{name}/versions/{version}/ready", summary="V2 model readiness (version)")
    @_endpoint("v2_metadata")
    async def v2_model_version_ready(self, name: str, version: str, request: Request) -> Response:
        return _json({"name": self._v2_served(name, version).model.name, "ready": True})

    @api.post("/v2/models/{name}/infer", summary="V2 inference: one input tensor per column",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object"}},
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
              }}})
    @_endpoint("v2_infer")
    async def v2_infer(self, name: str, request: Request) -> Response:
        return await self._v2_infer(name, None, request)

    @api.post("/v2/models/{name}/versions/{version}/infer", summary="V2 inference (version)")
    @_endpoint("v2_infer")
    async def v2_infer_version(self, name: str, version: str, request: Request) -> Response:
        return await self._v2_infer(name, version, request)

    async def _v2_infer(self, name: str, version: str | None, request: Request) -> Response:
        served = self._v2_served(name, version)
        check_content_type(request.headers.get("content-type"),
                           ("application/json", "application/octet-stream"))
        raw = await self._body(request)
        parsed: V2Request = await _off_loop(
            raw, parse_v2_infer, raw, request.headers.get("inference-header-content-length"),
            served.model, self.args.max_request_rows)
        outputs = await self._predict(served.model, parsed.columns, parsed.n, request)
        body, headers = v2_infer_response(outputs, served.model, parsed)
        return Response(body, headers=headers, media_type=headers["content-type"])


class _BuilderArgs(BaseModel):
    model_config = ConfigDict(extra="allow")

    config: str | None = None


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: ``serve run pipelines.serving:build_app model_uri=...``.

    ``args`` holds :class:`ServeArgs` fields; with ``config=PIPELINE.yaml`` the pipeline's
    ``serve:`` section, tracking URI and ``models:/<name>@<alias>`` are the defaults.
    """
    given = _BuilderArgs.model_validate(args)
    values = {k: v for k, v in (given.model_extra or {}).items()}
    if given.config:
        from pipelines.config import load_config

        cfg = load_config(given.config, [])
        values = {**cfg.serve.model_dump(), "tracking_uri": cfg.tracking_uri,
                  "model_uri": cfg.model_uri,
                  "request_log": cfg.monitor.request_log.model_dump(),
                  "request_log_path": cfg.request_log_path, **values}
    parsed = ServeArgs.model_validate(values)
    return ModelServer.options(  # type: ignore[attr-defined]
        **deployment_options(parsed)
    ).bind(parsed.model_dump())
