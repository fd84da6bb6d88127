"""Serving binds to loopback unless told otherwise, and says so when told otherwise."""

from __future__ import annotations

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
