"""The ``serve`` section: online inference with Ray Serve."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.config.base import _Section

__all__ = ["ServeConfig"]


class ServeConfig(_Section):
    """Online inference with Ray Serve: /predict, /invocations (MLflow) and /v2 (KServe)."""

    host: str = Field("127.0.0.1", description="Bind address of the HTTP proxy.")
    port: int = Field(8000, ge=1, le=65535)
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = Field(
        "EveryNode", description="Where Serve runs its HTTP proxies: EveryNode (Ray's default: "
        "each node answers on host:port, a load balancer spreads clients), HeadOnly (one "
        "entry point on the head; also for several nodes on one machine, which share ports).",
    )
    num_replicas: int = Field(
        1, ge=1, description="Replicas; with autoscaling, the number started with."
    )
    autoscaling: bool = Field(
        False, description="Scale replicas between min_replicas and max_replicas on load."
    )
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(
        32, gt=0, description="Autoscaling aims at this many requests in flight per replica."
    )
    upscale_delay_s: float = Field(
        30.0, ge=0, description="Autoscaling: how long load stays above target before replicas "
        "are added (Ray Serve's default)."
    )
    downscale_delay_s: float = Field(
        600.0, ge=0, description="Autoscaling: how long load stays below target before replicas "
        "are removed (Ray Serve's default); keeps replicas through short lulls."
    )
    num_cpus_per_replica: float = Field(
        0.5, gt=0, description="Fractional, so batch jobs on the same small cluster still run."
    )
    max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one replica works on at once (its batching window)."
    )
    max_queued_requests: int = Field(
        256, ge=-1, description="Requests waiting for a free replica slot; more are answered "
        "503 at once instead of piling up. -1: no limit.",
    )
    overload_retry_after_s: float | None = Field(
        1.0, ge=0, description="Retry-After header on 503 overload answers (None: no header)."
    )
    max_batch_size: int = Field(
        256, ge=1, description="Most rows one model call combines across requests "
        "(@serve.batch); a request with more rows runs on its own.",
    )
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="How long a batch waits for more requests. 0: take what is "
        "queued; requests still batch up while the model is busy, with no idle wait.",
    )
    max_request_rows: int = Field(10_000, ge=1, description="Larger requests get HTTP 413.")
    max_explain_rows: int = Field(
        100, ge=1, description="Most rows of a /predict?explain=true request (attributions cost "
        "far more than predictions: TreeSHAP is about depth x leaves per tree and row); larger "
        "explain requests get HTTP 413.",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="A request still unanswered after this long (reading its body, "
        "waiting for and running the model) gets HTTP 504, so no client waits without bound.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Larger bodies get HTTP 413."
    )
    model_poll_interval_s: float = Field(
        10.0, ge=0, description="How often replicas check where the registry alias points and "
        "load a new version without dropping requests (hot swap). 0: never.",
    )
    model_retry_interval_s: float = Field(
        5.0, gt=0, description="While the model store cannot be reached at start, how often a "
        "replica retries the first load (it reports not-ready and answers 503 meanwhile).",
    )
    auth_token_env: str | None = Field(
        None, description="Require `Authorization: Bearer <token>`, the token read from this "
        "environment variable of the replicas. Default: no auth (localhost demos).",
    )
    auth_token_file: str | None = Field(
        None, description="As auth_token_env, the token read from this file (a mounted secret)."
    )
    ingress: Literal["proxy", "haproxy"] = Field(
        "proxy", description="proxy: Serve's Python HTTP proxy. haproxy: HAProxy in front of "
        "replicas that listen themselves (Serve's throughput-optimised mode; set when raypipe "
        "starts the Ray instance, else set RAY_SERVE_ENABLE_HA_PROXY=1 and "
        "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 on the cluster).",
    )

    @model_validator(mode="after")
    def _check_scaling(self) -> ServeConfig:
        if self.autoscaling and not (
            self.min_replicas <= self.num_replicas <= self.max_replicas
        ):
            raise ValueError(
                f"with autoscaling, min_replicas ({self.min_replicas}) <= num_replicas "
                f"({self.num_replicas}) <= max_replicas ({self.max_replicas}) must hold"
            )
        if self.auth_token_env and self.auth_token_file:
            raise ValueError("set one of auth_token_env and auth_token_file, not both")
        return self
