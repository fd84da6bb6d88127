"""Serving binds to loopback unless told otherwise, and says so when told otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.cli import bind_warnings
from pipelines.config import ServeConfig


def test_loopback_is_the_default_and_quiet() -> None:
    assert ServeConfig().host == "127.0.0.1"
    for host in ("127.0.0.1", "localhost", "::1"):
        assert bind_warnings(host, ServeConfig()) == []


def test_other_addresses_warn_and_more_so_without_auth() -> None:
    open_ = bind_warnings("0.0.0.0", ServeConfig())
    assert len(open_) == 2 and "reachable beyond this machine" in open_[0]
    assert "no auth token" in open_[1]
    authed = bind_warnings("10.0.0.5", ServeConfig(auth_token_env="RAYPIPE_TOKEN"))
    assert len(authed) == 1 and "10.0.0.5" in authed[0]


def test_a_local_ray_starts_without_its_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard is also Ray's job-submission API: a laptop run must not open it."""
    import ray

    from pipelines.cli import _init_ray
    from pipelines.config import RuntimeConfig

    calls: list[dict[str, Any]] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    _init_ray(RuntimeConfig(), verbose=False)
    assert calls == [{"include_dashboard": False, "log_to_driver": False,
                      "configure_logging": False,
                      "_system_config": {"num_workers_soft_limit": 8}}]
    calls.clear()
    _init_ray(RuntimeConfig(ray_address="ray://head:10001"), verbose=False)
    assert calls == [{"address": "ray://head:10001", "log_to_driver": False}]


@pytest.mark.parametrize(("cpus", "expected"), [
    (1, {"num_workers_soft_limit": 8}), (2, {"num_workers_soft_limit": 8}),
    (7, {"num_workers_soft_limit": 8}), (8, {}), (64, {}), (None, {"num_workers_soft_limit": 8}),
])
def test_a_small_local_instance_keeps_idle_workers_between_stages(
        monkeypatch: pytest.MonkeyPatch, cpus: int | None, expected: dict[str, int]) -> None:
    """Below 8 CPUs Ray would kill idle workers that the next stage starts again."""
    from pipelines.cli import _local_system_config

    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert _local_system_config() == expected
