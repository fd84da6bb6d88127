"""What every config section shares: the frozen, strict base model and the config error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from pipelines.errors import RaypipeError

__all__ = ["ConfigError"]


class _Section(BaseModel):
    """Base for every config section: immutable and strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfigError(RaypipeError, ValueError):
    """A configuration file or override that cannot be used; the message names the field."""
