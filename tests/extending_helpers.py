"""Kinds defined outside the package, the way a user extends raypipe.

Between the ``README example`` markers stands, line for line, the example of README.md's
"A new source kind" (``tests/unit/sources/test_registry.py`` checks that the two agree, and
``tests/integration/test_extending.py`` runs a whole pipeline on it). Importing this module
registers the ``toy`` source kind in the importing process.
"""

# --- README example: a new source kind ---
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from pipelines.config import SourceConfig
from pipelines.sources import SourceReader, register_source

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset


class ToySource(SourceConfig):
    """A generated binary-classification table: the same rows and seed give the same rows."""

    kind: Literal["toy"] = "toy"
    rows: int = Field(400, ge=10, description="Rows to generate.")
    seed: int = Field(0, description="Seed of the generator.")


@register_source
class ToyReader(SourceReader[ToySource]):
    """Reads ``source: {kind: toy, rows: ..., seed: ...}``."""

    kind = "toy"
    config_type = ToySource

    def table(self) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        rng = np.random.default_rng(self.config.seed)
        n = self.config.rows
        x = rng.normal(size=n)
        plan = rng.choice(["basic", "plus", "pro"], size=n)
        score = 2.0 * x + (plan == "pro") - 0.5
        label = (rng.uniform(size=n) < 1 / (1 + np.exp(-3 * score))).astype("int64")
        return pa.table({"id": np.arange(n), "x": x, "plan": plan, "label": label})

    def read(self) -> Dataset:
        import ray.data

        return ray.data.from_arrow(self.table())  # built on the driver, sent as blocks

    def fingerprint(self, dataset: Dataset | None = None) -> tuple[str, str]:
        # A digest of the rows themselves, not of the settings: a changed generator shows.
        digest = hashlib.sha256(repr(self.table().to_pydict()).encode()).hexdigest()
        return f"toy://rows={self.config.rows}/seed={self.config.seed}", digest

    def rows(self, dataset: Dataset | None) -> int | None:
        return self.config.rows
# --- end of the README example ---
