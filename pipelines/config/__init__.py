"""The pipeline configuration: one frozen pydantic model, the single source of settings.

Every section is optional except ``name``, ``source`` and ``target``; defaults are chosen so
that a file with only those keys runs end to end. Validation happens here, before Ray starts,
and every error names the offending field (see :func:`load_config`).

One module per section; this package only re-exports:

- ``base``: the frozen, strict section base and :class:`ConfigError`
- ``sources``: ``source`` (and ``batch.input``), one model per kind on the ``SourceConfig``
  base; a plugin kind's model is registered there
- ``contract``: ``schema``, the data contract and the profile settings
- ``features``: ``clean`` and ``features``
- ``split``, ``training`` (``train``), ``evaluate``, ``batch``, ``serve``, ``monitor``
- ``runtime``: ``tracking`` and ``runtime``
- ``names``: the rule for pipeline and registered model names, aliases and ``models:/`` URIs
- ``pipeline``: :class:`PipelineConfig`, cross-section checks and derived settings
- ``loading``: YAML files, ``section.field=value`` overrides, readable errors
"""

from pipelines.config.base import ConfigError
from pipelines.config.batch import BatchConfig
from pipelines.config.contract import ColumnContract, ProfileConfig, SchemaConfig
from pipelines.config.evaluate import ChecksConfig, EvaluateConfig, GateConfig
from pipelines.config.features import (
    BinFeature,
    CleanConfig,
    ColumnImpute,
    DerivedFeature,
    FeaturesConfig,
    RatioFeature,
    SelectionConfig,
)
from pipelines.config.loading import demo_config_path, load_config, parse_config
from pipelines.config.monitor import MonitorConfig, RequestLogConfig, RetrainConfig
from pipelines.config.names import ModelUriError, check_alias, check_name, parse_model_uri
from pipelines.config.pipeline import PipelineConfig, Task
from pipelines.config.runtime import RuntimeConfig, TrackingConfig
from pipelines.config.serve import ServeConfig
from pipelines.config.sources import (
    AnySource,
    DemoSource,
    FileSource,
    HttpSource,
    Source,
    SourceConfig,
    SqlSource,
)
from pipelines.config.split import SplitConfig
from pipelines.config.training import (
    Choice,
    FamilySettings,
    LinearSettings,
    LogUniform,
    MLPSettings,
    RandInt,
    Search,
    SearchDim,
    TrainConfig,
    Uniform,
    XGBoostSettings,
)

__all__ = [
    "AnySource",
    "BatchConfig",
    "BinFeature",
    "ChecksConfig",
    "Choice",
    "CleanConfig",
    "ColumnContract",
    "ColumnImpute",
    "ConfigError",
    "DemoSource",
    "DerivedFeature",
    "EvaluateConfig",
    "FamilySettings",
    "FeaturesConfig",
    "FileSource",
    "GateConfig",
    "HttpSource",
    "LinearSettings",
    "LogUniform",
    "MLPSettings",
    "ModelUriError",
    "MonitorConfig",
    "PipelineConfig",
    "ProfileConfig",
    "RandInt",
    "RatioFeature",
    "RequestLogConfig",
    "RetrainConfig",
    "RuntimeConfig",
    "SchemaConfig",
    "Search",
    "SearchDim",
    "SelectionConfig",
    "ServeConfig",
    "Source",
    "SourceConfig",
    "SplitConfig",
    "SqlSource",
    "Task",
    "TrackingConfig",
    "TrainConfig",
    "Uniform",
    "XGBoostSettings",
    "check_alias",
    "check_name",
    "demo_config_path",
    "load_config",
    "parse_config",
    "parse_model_uri",
]
