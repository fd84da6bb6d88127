"""The ``tracking`` and ``runtime`` sections: the MLflow store, the Ray cluster, the work dir."""

from __future__ import annotations

from pydantic import Field

from pipelines.config.base import _Section

__all__ = ["RuntimeConfig", "TrackingConfig"]


class TrackingConfig(_Section):
    """MLflow tracking and registry."""

    uri: str | None = Field(
        None, description="Tracking URI. Default: $MLFLOW_TRACKING_URI, else a SQLite file "
        "under the work dir.",
    )
    experiment: str | None = Field(None, description="Default: the pipeline name.")
    registered_model: str | None = Field(None, description="Default: the pipeline name.")
    alias: str = "champion"


class RuntimeConfig(_Section):
    """Where the pipeline runs and keeps its files."""

    work_dir: str = Field(".raypipe", description="Local state: MLflow store, outputs, results.")
    ray_address: str | None = Field(
        None, description="Ray cluster to join. Default: $RAY_ADDRESS, else a local instance."
    )
    storage_path: str | None = Field(
        None, description="Ray Tune/Train storage. Default: <work_dir>/ray_results."
    )
