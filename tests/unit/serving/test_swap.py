"""Hot swap bookkeeping (ModelSlot) and the Serve options a config stands for — no Ray cluster."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from pipelines.config import ConfigError, ServeConfig, load_config
from pipelines.model.engine import LoadedModel, ModelRef
from pipelines.serving.swap import STORE_UNREACHABLE, ModelSlot
from tests.unit.model.helpers import make_model

BASE = make_model()


class Registry:
    """A fake registry: an alias that can move, versions that may fail to load."""

    def __init__(self) -> None:
        self.alias_version = "1"
        self.broken: set[str] = set()
        self.loads: list[str] = []
        self.lock = threading.Lock()

    def resolve(self, uri: str) -> ModelRef:
        with self.lock:
            v = self.alias_version
        return ModelRef(name="unit", version=v, alias="champion", uri=f"models:/unit/{v}")

    def load(self, ref: ModelRef) -> LoadedModel:
        self.loads.append(ref.version)
        if ref.version in self.broken:
            raise OSError(f"artifact of version {ref.version} is missing")
        return replace(BASE, ref=ref)


def slot(reg: Registry, interval: float = 0.0, **kw: Any) -> ModelSlot:
    return ModelSlot("models:/unit@champion", poll_interval_s=interval, resolve=reg.resolve,
                     load=reg.load, **kw)


def test_refresh_swaps_when_the_alias_moves_and_only_then() -> None:
    reg = Registry()
    swaps: list[tuple[str | None, str]] = []
    s = slot(reg, on_swap=lambda old, new: swaps.append((old and old.version, new.version)))
    assert s.current.version == "1" and swaps == [(None, "1")]
    assert not s.refresh() and reg.loads == ["1"]  # unchanged alias: nothing loaded
    reg.alias_version = "2"
    assert s.refresh()
    assert s.current.version == "2" and swaps[-1] == ("1", "2") and s.swaps == 1
    assert not s.degraded


def test_a_version_that_fails_to_load_keeps_the_old_model_and_reports_degraded() -> None:
    reg = Registry()
    failures: list[int] = []
    s = slot(reg, on_fail=lambda: failures.append(1))
    reg.alias_version, reg.broken = "3", {"3"}
    assert not s.refresh()
    assert s.current.version == "1" and s.degraded and "version 3" in (s.error or "")
    assert not s.refresh() and reg.loads.count("3") == 1  # not retried until the alias moves
    reg.alias_version = "1"
    assert not s.refresh() and not s.degraded  # back on the served version: healthy again
    reg.alias_version = "4"
    assert s.refresh() and s.current.version == "4"
    assert failures == [1]


def test_registry_errors_never_escape_refresh() -> None:
    reg = Registry()
    s = slot(reg)

    def boom(uri: str) -> ModelRef:
        raise ConnectionError("tracking server down")

    s._resolve = boom
    assert not s.refresh()
    assert s.degraded and "tracking server down" in (s.error or "")
    assert s.current.version == "1"


def test_load_errors_are_kept_without_credentials_and_with_a_coarse_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    """A store error quoting the tracking URI must not carry its password to the log, to
    /metadata or (through the reason) to the open /readyz probe."""
    reg = Registry()
    s = slot(reg)

    def down(uri: str) -> ModelRef:
        raise ConnectionError("API request to http://admin:" "s3cret@mlflow:5000/api/2.0/mlflow/"
                              "registered-models/alias failed: Max retries exceeded")

    s._resolve = down
    with caplog.at_level("WARNING"):
        assert not s.refresh()
    assert s.degraded and "admin:***@mlflow:5000" in (s.error or "")
    assert s.reason == STORE_UNREACHABLE
    assert "s3cret" not in (s.error or "") and "s3cret" not in caplog.text
    reg.alias_version, reg.broken = "3", {"3"}
    s._resolve = reg.resolve
    assert not s.refresh()
    assert s.reason == "the model version failed to load" and "version 3" in (s.error or "")
    reg.alias_version = "1"
    assert not s.refresh() and s.reason is None and s.error is None


def test_retarget_follows_another_uri() -> None:
    reg = Registry()
    s = slot(reg)
    reg.alias_version = "7"
    assert s.retarget("models:/unit@challenger")
    assert s.model_uri == "models:/unit@challenger" and s.current.version == "7"


def test_polling_thread_picks_up_a_moved_alias() -> None:
    reg = Registry()
    s = slot(reg, interval=0.05)
    s.start()
    try:
        reg.alias_version = "2"
        deadline = time.time() + 5
        while s.current.version != "2" and time.time() < deadline:
            time.sleep(0.02)
        assert s.current.version == "2"
    finally:
        s.stop()


def test_pinned_versions_are_not_polled() -> None:
    reg = Registry()
    pinned = ModelSlot("models:/unit/1", poll_interval_s=0.01, resolve=reg.resolve, load=reg.load)
    assert not pinned.follows_registry
    pinned.start()
    assert pinned._thread is None


class Outage(Registry):
    """A registry whose store is down until ``up`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False

    def resolve(self, uri: str) -> ModelRef:
        if not self.up:
            raise ConnectionError("connection refused: tracking server down")
        return super().resolve(uri)


def test_store_down_at_start_leaves_the_slot_not_ready_and_the_first_load_retried() -> None:
    reg = Outage()
    swaps: list[str] = []
    failures: list[int] = []
    s = ModelSlot("models:/unit@champion", poll_interval_s=0, resolve=reg.resolve, load=reg.load,
                  on_swap=lambda old, new: swaps.append(new.version),
                  on_fail=lambda: failures.append(1), retry_interval_s=0.05)
    assert not s.ready and s.current is None and "tracking server down" in (s.error or "")
    assert failures == [1] and swaps == []
    s.start()  # retries even with polling off: a replica without a model serves nothing
    try:
        time.sleep(0.2)
        assert not s.ready and reg.loads == []
        reg.up = True
        deadline = time.time() + 5
        while not s.ready and time.time() < deadline:
            time.sleep(0.02)
        assert s.ready and not s.degraded and swaps == ["1"] and s.swaps == 0
        assert s._thread is not None
        s._thread.join(timeout=5)
        assert not s._thread.is_alive()  # loaded, nothing to follow: the loop ends
    finally:
        s.stop()


def test_a_missing_model_at_start_is_an_error_not_an_outage() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    def missing(uri: str) -> ModelRef:
        raise MlflowException("Registered model alias champion not found.",
                              error_code=RESOURCE_DOES_NOT_EXIST)

    with pytest.raises(MlflowException):
        ModelSlot("models:/unit@champion", poll_interval_s=0, resolve=missing,
                  load=Registry().load)


def test_an_outage_during_a_swap_is_retried_at_the_next_poll() -> None:
    reg = Registry()
    s = slot(reg)
    reg.alias_version = "2"
    real_load = reg.load
    calls: list[str] = []

    def flaky(ref: ModelRef) -> LoadedModel:
        calls.append(ref.version)
        if len(calls) == 1:
            raise TimeoutError("artifact store timed out")
        return real_load(ref)

    s._load = flaky
    assert not s.refresh() and s.degraded and s.current is not None
    assert s.current.version == "1"
    assert s.refresh() and s.current.version == "2" and not s.degraded


@pytest.mark.parametrize(("err", "outage"), [
    (ConnectionError("refused"), True),
    (TimeoutError("slow"), True),
    (RuntimeError("wrapped"), True),  # caused by a network error
    (ValueError("bad MLmodel"), False),
    (KeyError("flavor"), False),
    (FileNotFoundError("MLmodel"), False),  # a broken version, not an outage
])
def test_store_unavailable_tells_outages_from_bad_models(err: Exception, outage: bool) -> None:
    from pipelines.serving.swap import store_unavailable

    if isinstance(err, RuntimeError):
        err.__cause__ = ConnectionResetError("socket closed")
    assert store_unavailable(err) is outage


def test_mlflow_error_codes_tell_outages_from_missing_models() -> None:
    from mlflow.exceptions import MlflowException

    from pipelines.serving.swap import store_unavailable

    down = MlflowException("API request to http://127.0.0.1:1/api failed with exception "
                           "ConnectionError")  # MLflow's REST client: INTERNAL_ERROR
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    assert store_unavailable(down)
    assert store_unavailable(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert not store_unavailable(MlflowException("no such version",
                                                 error_code=RESOURCE_DOES_NOT_EXIST))
    assert not store_unavailable(MlflowException("bad MLmodel"))  # MLflow's default code


# --------------------------------------------------------------------------- config → Serve


def test_deployment_options_fixed_and_autoscaled() -> None:
    from pipelines.serving import deployment_options

    fixed = deployment_options(ServeConfig(num_replicas=2, max_ongoing_requests=8,
                                           max_queued_requests=4, num_cpus_per_replica=0.25))
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] == 8 and fixed["max_queued_requests"] == 4
    assert fixed["ray_actor_options"] == {"num_cpus": 0.25}
    assert fixed["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}
    auto = deployment_options(ServeConfig(autoscaling=True, min_replicas=1, num_replicas=1,
                                          max_replicas=3, target_ongoing_requests=5))
    assert auto["num_replicas"] == "auto"
    assert auto["autoscaling_config"] == {"min_replicas": 1, "initial_replicas": 1,
                                          "max_replicas": 3, "target_ongoing_requests": 5,
                                          "upscale_delay_s": 30.0, "downscale_delay_s": 600.0}


@pytest.mark.parametrize(("override", "field"), [
    ("serve.autoscaling=true", "serve"),
    ("serve.max_queued_requests=-2", "serve.max_queued_requests"),
    ("serve.ingress=nginx", "serve.ingress"),
    ("batch.num_cpus_per_actor=0", "batch.num_cpus_per_actor"),
])
def test_bad_serve_and_batch_settings_fail_naming_the_field(override: str, field: str) -> None:
    extra = ["serve.num_replicas=5"] if override == "serve.autoscaling=true" else []
    with pytest.raises(ConfigError) as err:
        load_config(None, [override, *extra])
    assert field in str(err.value)


def test_both_auth_sources_are_refused() -> None:
    with pytest.raises(ValueError, match="auth_token_env and auth_token_file"):
        ServeConfig(auth_token_env="X", auth_token_file="/run/secret")


def test_builder_takes_string_arguments_and_a_pipeline_config() -> None:
    from pipelines.config import demo_config_path
    from pipelines.serving import ServeArgs, build_app

    args = ServeArgs.model_validate({"model_uri": "models:/m@champion", "max_batch_size": "32",
                                     "autoscaling": "false"})
    assert args.max_batch_size == 32
    app = build_app({"config": str(demo_config_path()), "max_queued_requests": "7"})
    deployment = app._bound_deployment  # the bound ModelServer
    bound = deployment.init_args[0]
    assert bound["model_uri"] == "models:/raypipe-demo@champion"
    assert bound["max_queued_requests"] == 7
    assert deployment._deployment_config.max_queued_requests == 7
