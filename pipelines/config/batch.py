"""The ``batch`` section: batch inference with a Ray Data actor pool."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipelines.config.base import _Section
from pipelines.config.sources import Source

__all__ = ["BatchConfig"]


class BatchConfig(_Section):
    """Batch inference (`raypipe predict`, the pipeline's batch stage) with a Ray Data actor pool.

    Every input row ends up either in the predictions or in the quarantine folder with a
    reason; the counts are checked to add up.
    """

    input: Source | None = Field(
        None, description="Raw rows `raypipe predict --config` scores when --input is not given; "
        "any source kind the ingest stage reads.",
    )
    output_dir: str | None = Field(
        None, description="Where predictions go. Default: <work_dir>/outputs/<name>."
    )
    batch_size: int = Field(
        65_536, ge=1, description="Rows per model call; larger amortises the per-call overhead."
    )
    concurrency: int = Field(
        2, ge=1, description="Predictor actors; each loads the model once and keeps it. No "
        "more actors start than there are batches of rows to score."
    )
    num_cpus_per_actor: float = Field(
        0.25, gt=0, description="Fractional so read tasks keep CPUs on small machines: a pool "
        "whose actors take every CPU starves the reads and hangs. The row check before the pool "
        "takes the same fraction.",
    )
    id_columns: list[str] | None = Field(
        None, description="Input columns copied next to the predictions (ids, keys). "
        "Default: every input column.",
    )
    partition_cols: list[str] = Field(
        default_factory=list,
        description="Hive-partition the Parquet output by these output columns.",
    )
    min_rows_per_file: int | None = Field(
        1_000_000, ge=1, description="Output blocks are combined into Parquet files of at least "
        "this many rows (the last may hold fewer): one write task per file instead of one per "
        "batch, 1.5 s of 15 s on 5M rows here. Ignored with partition_cols. null: one file per "
        "batch.",
    )
    model_version_column: str = Field(
        "model_version", min_length=1,
        description="Output column naming the registered model version that scored the row.",
    )
    quarantine_dir: str | None = Field(
        None, description="Where rows the model cannot score go, with the reason in "
        "`_quarantine_reason`. Default: <output>/_quarantine (ignored by Parquet readers).",
    )
    max_object_store_bytes: int | None = Field(
        None, ge=1, description="Cap on the object store memory the streaming run may use "
        "(Ray Data resource limit); default: Ray Data's own budget.",
    )
    explain: bool = Field(
        False, description="Add per-row attributions: `contribution_<column>` for every input "
        "column and `contribution_bias`, adding up to the margin (log-odds, the predicted "
        "class's score, the value). XGBoost and linear models only.",
    )

    @model_validator(mode="after")
    def _check_partitions(self) -> BatchConfig:
        if self.id_columns is not None and self.partition_cols:
            kept = set(self.id_columns) | {self.model_version_column}
            extra = [c for c in self.partition_cols if c not in kept]
            if extra:
                raise ValueError(f"partition_cols {extra} are not output columns; add them to "
                                 "id_columns")
        return self
