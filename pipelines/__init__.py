"""raypipe: config-driven, distributed ML pipelines for tabular data on Ray."""

from pipelines.config import ConfigError, PipelineConfig, load_config

__all__ = ["ConfigError", "PipelineConfig", "load_config"]
