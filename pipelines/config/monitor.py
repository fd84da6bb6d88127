"""The ``monitor`` section: request logging, drift and quality checks, the retraining trigger."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from pipelines.config.base import _Section

__all__ = ["LOG_KEY_COLUMNS", "MonitorConfig", "RequestLogConfig", "RetrainConfig"]

LOG_KEY_COLUMNS = ("request_id", "timestamp", "model_version")
"""Written to every request log row whatever the column settings: label joins and time
windows need them, and they hold no request input."""


class RequestLogConfig(_Section):
    """Request logging of the Serve app: a sample of requests and predictions, to Parquet.

    Records are queued in the replica and written by a background thread in batches, so a
    request never waits for storage; when the queue is full, records are dropped (counted in
    ``raypipe_request_log_rows_total{outcome="dropped"}``), never the request.

    A row holds the request id, time, model version, the model's input columns (all, or those
    ``include_columns`` / ``exclude_columns`` leave) and the predictions. Files are named
    ``<UTC time>-v<version>-<writer>-<seq>.parquet``, so name order is age order; once a
    minute (after a flush, or idle) each replica's writer deletes such files older than
    ``retention_hours`` (and unfinished ``.tmp`` files after an hour), then the oldest ones
    until the folder holds ``max_bytes`` at most. Files of any other name are never touched.
    """

    enabled: bool = Field(True, description="Log a sample of served requests.")
    path: str | None = Field(
        None, description="Folder (local path or any pyarrow file system URI, e.g. s3://...) "
        "the Parquet files go to. Default: <work_dir>/request_logs/<name>.",
    )
    sample_rate: float = Field(
        0.1, ge=0, le=1, description="Share of requests logged (whole requests, chosen at "
        "random); 0 logs nothing. A tenth still gives drift windows thousands of rows deep at "
        "modest traffic, while storing a tenth of the personal data, disk and write load; use "
        "1.0 only where every request must be joinable to late labels.",
    )
    exclude_columns: list[str] = Field(
        default_factory=list, description="Model input columns never written (personal data: "
        "names, e-mails, account ids). They cannot be monitored for drift: `raypipe monitor` "
        "lists them as not logged.",
    )
    include_columns: list[str] | None = Field(
        None, description="Allow-list: when set, only these model input columns are written "
        "(besides request_id, timestamp, model_version and the predictions); [] writes no "
        "input at all. Default: every model input not in exclude_columns.",
    )
    retention_hours: float | None = Field(
        720.0, gt=0, description="Delete log files older than this (by the time in their "
        "name); default 30 days, long enough for monthly windows and late labels. None: keep.",
    )
    max_bytes: int | None = Field(
        10 * 1024**3, ge=1, description="Disk cap of the log folder: past it, the oldest log "
        "files are deleted first (checked after a flush, so the folder may pass it by up to a "
        "minute of writes). Default 10 GiB. None: no cap.",
    )
    flush_rows: int = Field(
        5_000, ge=1, description="Write a Parquet file once this many rows are queued.",
    )
    flush_interval_s: float = Field(
        10.0, gt=0, description="... or once the oldest queued row is this old.",
    )
    max_queue_rows: int = Field(
        100_000, ge=1, description="Rows waiting to be written; beyond this, records are "
        "dropped and counted, so a slow store never slows requests or fills memory.",
    )

    @field_validator("exclude_columns", "include_columns")
    @classmethod
    def _check_names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        keys = [c for c in v if c in LOG_KEY_COLUMNS]
        if keys:
            raise ValueError(f"{keys} are always written (label joins and time windows need "
                             "them); list model input columns only")
        if any(not c for c in v):
            raise ValueError("column names must not be empty")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _check_lists(self) -> RequestLogConfig:
        both = sorted(set(self.exclude_columns) & set(self.include_columns or ()))
        if both:
            raise ValueError(f"{both} named in both include_columns and exclude_columns; "
                             "say whether to log them in one list")
        return self

    def logs_column(self, name: str) -> bool:
        """Whether the model input column ``name`` is written to the log."""
        if name in self.exclude_columns:
            return False
        return self.include_columns is None or name in self.include_columns


class RetrainConfig(_Section):
    """Retraining trigger: when monitoring flags drift or a quality drop, submit the pipeline."""

    enabled: bool = Field(False, description="Submit a training run when a threshold is crossed.")
    address: str | None = Field(
        None, description="Ray job API (dashboard) address, e.g. http://raypipe-head-svc:8265. "
        "Default: $RAY_ADDRESS, else the local cluster's.",
    )
    working_dir: str = Field(
        ".", description="Uploaded as the job's working directory; must hold ray_jobs/ and the "
        "pipeline config.",
    )
    overrides: list[str] = Field(
        default_factory=list, description="`section.field=value` overrides of the training run, "
        "e.g. `source.path=s3://bucket/latest/*.parquet` to train on the newer data.",
    )

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if "=" not in o]
        if bad:
            raise ValueError(f"overrides {bad} must look like section.field=value")
        return v


class MonitorConfig(_Section):
    """Request logging, drift and quality monitoring (`raypipe monitor`), retraining trigger.

    A numeric feature drifts when its PSI reaches ``psi_threshold``, or when the
    Kolmogorov-Smirnov test is significant (p < ``p_value``) with a statistic of at least
    ``min_effect``; a categorical feature likewise with the chi-square test and Cramér's V.
    Requiring an effect size as well as a p-value keeps large windows from flagging
    differences too small to matter.
    """

    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    reference_rows: int = Field(
        10_000, ge=100, description="Training rows (seeded sample) stored with the model as "
        "the monitoring reference, with the model's predictions on them.",
    )
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of numeric features (PSI).")
    psi_threshold: float = Field(0.2, gt=0, description="PSI at or above this is drift.")
    p_value: float = Field(
        0.01, gt=0, lt=1, description="Significance level of the KS / chi-square tests.",
    )
    min_effect: float = Field(
        0.1, gt=0, le=1, description="Smallest KS statistic / Cramér's V a significant test "
        "must also reach to count as drift.",
    )
    max_missing_increase: float = Field(
        0.1, ge=0, le=1, description="Flag a feature whose missing-value rate rose by more "
        "than this (absolute) over the reference.",
    )
    max_new_category_rate: float = Field(
        0.05, ge=0, le=1, description="Flag a categorical feature when more than this share "
        "of its values were never seen in training.",
    )
    max_quality_drop: float = Field(
        0.05, ge=0, description="With labels: flag when the live gate metric is worse than "
        "the model's test metric by more than this.",
    )
    min_rows: int = Field(
        100, ge=1, description="A window with fewer rows is reported but flags nothing.",
    )
    columns: list[str] | None = Field(
        None, description="Input columns to monitor. Default: every model input except "
        "datetime columns (timestamps move with time by nature) and those request_log keeps "
        "out of the log.",
    )
    id_column: str = Field(
        "request_id", min_length=1, description="Key that joins late labels to logged rows.",
    )
    output_dir: str | None = Field(
        None, description="Where reports go. Default: <work_dir>/monitoring/<name>.",
    )
    webhook_url: str | None = Field(
        None, description="POST the JSON summary here when a threshold is crossed.",
    )
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

