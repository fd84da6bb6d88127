"""The ``split`` section: how rows are divided into train, valid and test."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.config.base import _Section

__all__ = ["SplitConfig"]


class SplitConfig(_Section):
    """How rows are divided into train / valid / test."""

    strategy: Literal["stratified", "random", "time"] = "stratified"
    time_column: str | None = Field(
        None, description="time: order rows by this column; train holds the oldest, test the "
        "newest, so no training row is later than any validation or test row.",
    )
    train: float = Field(0.7, gt=0, lt=1)
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _check_sum(self) -> SplitConfig:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + valid + test must be 1.0, got {total:.4f}")
        if self.strategy == "time" and not self.time_column:
            raise ValueError("strategy 'time' needs time_column")
        return self
