"""The whole config: :class:`PipelineConfig`, its cross-section checks and derived settings."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from pipelines.config.base import ConfigError, _Section
from pipelines.config.batch import BatchConfig
from pipelines.config.contract import SchemaConfig
from pipelines.config.evaluate import EvaluateConfig
from pipelines.config.features import CleanConfig, FeaturesConfig
from pipelines.config.monitor import MonitorConfig
from pipelines.config.names import check_name
from pipelines.config.runtime import RuntimeConfig, TrackingConfig
from pipelines.config.serve import ServeConfig
from pipelines.config.sources import Source
from pipelines.config.split import SplitConfig
from pipelines.config.training import TrainConfig

if TYPE_CHECKING:
    from pipelines.storage.location import StoragePath

__all__ = ["PipelineConfig", "Task"]

Task = Literal["binary", "multiclass", "regression"]


class PipelineConfig(_Section):
    """One pipeline, from source to registered model."""

    name: str = Field(description="Pipeline name; also the registered model name.")
    source: Source
    target: str
    task: Task | None = Field(None, description="Inferred from the target when omitted.")
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    clean: CleanConfig = Field(default_factory=CleanConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return check_name(v)

    @model_validator(mode="after")
    def _check_columns(self) -> PipelineConfig:
        if self.target in self.features.drop:
            raise ValueError(f"features.drop lists the target column {self.target!r}")
        return self

    # Derived settings live here so every consumer reads the same value. Locations are
    # StoragePaths: a local folder or an object-store prefix, read and written alike.
    @property
    def work_dir(self) -> StoragePath:
        from pipelines.storage.location import storage_path

        return storage_path(self.runtime.work_dir)

    @property
    def storage_path(self) -> str:
        return self.runtime.storage_path or str(self.work_dir / "ray_results")

    @property
    def cache_dir(self) -> StoragePath:
        """The stage cache of this pipeline (see :mod:`pipelines.cache`)."""
        return self.work_dir / "cache" / self.name

    @property
    def output_dir(self) -> StoragePath:
        from pipelines.storage.location import storage_path

        if self.batch.output_dir:
            return storage_path(self.batch.output_dir)
        return self.work_dir / "outputs" / self.name

    @property
    def request_log_path(self) -> str:
        return self.monitor.request_log.path or str(self.work_dir / "request_logs" / self.name)

    @property
    def monitor_dir(self) -> str:
        return self.monitor.output_dir or str(self.work_dir / "monitoring" / self.name)

    @property
    def tracking_uri(self) -> str:
        if self.tracking.uri:
            return self.tracking.uri
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if not self.work_dir.is_local:
            # MLflow's embedded store is a SQLite file, which an object store cannot hold.
            raise ConfigError(
                f"tracking.uri: runtime.work_dir is {self.work_dir}, where MLflow's embedded "
                "SQLite store cannot live; set tracking.uri (or MLFLOW_TRACKING_URI) to an "
                "MLflow server, e.g. http://mlflow:5000")
        return f"sqlite:///{self.work_dir.local / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        work = self.work_dir
        return (work / "mlartifacts").uri if not work.is_local \
            else (work.local / "mlartifacts").as_uri()

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def model_name(self) -> str:
        return self.tracking.registered_model or self.name

    @property
    def model_uri(self) -> str:
        """The registered model under the config's alias: ``models:/<name>@<alias>``."""
        return self.alias_uri(self.tracking.alias)

    def alias_uri(self, alias: str) -> str:
        """The registered model under ``alias`` (the gate's choice): ``models:/<name>@<alias>``."""
        return f"models:/{self.model_name}@{alias}"

    def version_uri(self, version: str | int) -> str:
        """One registered version of the model, safe against alias moves: ``models:/<name>/<version>``."""
        return f"models:/{self.model_name}/{version}"
