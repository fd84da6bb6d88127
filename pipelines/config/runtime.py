"""The ``tracking`` and ``runtime`` sections: the MLflow store, the Ray cluster, the work dir."""

from __future__ import annotations

from pydantic import Field, field_validator

from pipelines.config.base import _Section
from pipelines.config.names import check_alias, check_name

__all__ = ["RuntimeConfig", "TrackingConfig"]


class TrackingConfig(_Section):
    """MLflow tracking and registry."""

    uri: str | None = Field(
        None, description="Tracking URI. Default: $MLFLOW_TRACKING_URI, else a SQLite file "
        "under the work dir.",
    )
    experiment: str | None = Field(None, description="Default: the pipeline name.")
    registered_model: str | None = Field(
        None, description="Default: the pipeline name. The same rule as `name`: it also "
        "names folders (request logs), so it must stay one path segment.",
    )
    alias: str = Field(
        "champion", description="Registry alias the model is served and predicted from "
        "(letters, digits, '_', '-', as MLflow allows).",
    )

    @field_validator("registered_model")
    @classmethod
    def _check_registered_model(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v)

    @field_validator("alias")
    @classmethod
    def _check_alias(cls, v: str) -> str:
        return check_alias(v)


class RuntimeConfig(_Section):
    """Where the pipeline runs and keeps its files."""

    work_dir: str = Field(
        ".raypipe",
        description="Where the run keeps its state (stage cache, outputs, reports, results): a "
        "local folder or an object-store prefix such as s3://bucket/raypipe.",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join. Default: $RAY_ADDRESS, else a local instance."
    )
    storage_path: str | None = Field(
        None, description="Ray Tune/Train storage. Default: <work_dir>/ray_results."
    )
