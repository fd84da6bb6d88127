"""raypipe: config-driven, distributed ML pipelines for tabular data on Ray."""

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.errors import RaypipeError

__all__ = ["ConfigError", "PipelineConfig", "RaypipeError", "load_config"]
