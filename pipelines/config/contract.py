"""The ``schema`` section: the data contract and the data profile."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.config.base import _Section

__all__ = ["ColumnContract", "ProfileConfig", "SchemaConfig"]


class ColumnContract(_Section):
    """What one column must look like; rows that break it are quarantined with the reason."""

    type: Literal["int", "float", "string", "bool", "datetime"]
    nullable: bool = True
    min: float | None = Field(None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(None, description="Largest allowed value (numeric columns).")
    allowed: list[str] | None = Field(
        None,
        description="Allowed values (string columns), compared after trimming and lower-casing "
        "so that spelling variants are left to the cleaning stage rather than quarantined.",
    )
    regex: str | None = Field(
        None,
        description="Regular expression (Python syntax) every non-null value must match in "
        "full, e.g. '[A-Z]{2}\\d{4}' (string columns).",
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnContract:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max only apply to int or float columns, not {self.type}")
        if self.allowed is not None and self.type != "string":
            raise ValueError("allowed only applies to string columns")
        if self.regex is not None:
            if self.type != "string":
                raise ValueError("regex only applies to string columns")
            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"regex {self.regex!r} does not compile: {err}") from None
        return self


class ProfileConfig(_Section):
    """The data profile and quality report, and how ``raypipe profile`` infers a contract."""

    enabled: bool = Field(
        True, description="Profile the input and the rows that passed; write the quality report "
        "(JSON + HTML) and keep the training profile with the model for drift monitoring.",
    )
    top_values: int = Field(10, ge=1, le=1000, description="Most frequent values shown per column.")
    high_null_fraction: float = Field(
        0.5, ge=0, le=1, description="Report a column whose share of missing values is above this.",
    )
    range_margin: float = Field(
        0.1, ge=0, description="raypipe profile: widen the observed [min, max] by this share of "
        "the range on each side (never below 0 for a column without negative values).",
    )
    max_allowed_values: int = Field(
        20, ge=1, description="raypipe profile: a string column with at most this many distinct "
        "values gets an `allowed` list.",
    )


class SchemaConfig(_Section):
    """The data contract. Columns not listed here pass through unchecked."""

    columns: dict[str, ColumnContract] = Field(default_factory=dict)
    unique_key: list[str] = Field(
        default_factory=list,
        description="Column(s) whose values together identify a row. Rows repeating a key "
        "already seen are quarantined (the first valid row of each key is kept); rows with a "
        "missing key part are not checked, as in SQL.",
    )
    max_quarantine_fraction: float = Field(
        0.2, ge=0, le=1, description="Fail the run when more than this share of rows is quarantined."
    )
    profile: ProfileConfig = Field(default_factory=ProfileConfig)

    @field_validator("unique_key", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("unique_key")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"unique_key repeats a column: {v}")
        return v
