"""Column statistics of a Dataset in one streaming pass: per-batch partials, merged on the driver.

Each batch yields a small, mergeable summary per column — count, sum, sum of squares, a KLL
quantile sketch (Apache DataSketches, doubles), value counts where asked — and the driver adds
them up as they stream in. This replaces ``Dataset.aggregate``, whose hash-shuffle operators
and aggregator actors cost more than the statistics themselves on a small machine; the pass
fuses with the read and the preparation into one task per block, and only summaries (never
rows) reach the driver, so its memory stays bounded by the number of distinct categories.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["ColumnStats", "StatsPlan", "TableStats", "collect_stats"]

_KLL_K = 800  # sketch size: rank error about 0.3% (Ray's ApproximateQuantile default)
# Up to _EXACT_VALUES present values per column, batches ship their values, not a sketch, and
# the driver keeps them: the quantiles of a training split that size are exact and the same in
# every run, so the fitted pipeline (and the model trained on its features) is reproducible.
# KLL compaction is random (DataSketches seeds it per process and offers no seed), so only
# beyond that limit may the fitted quantiles differ slightly between two runs on the same rows.
_EXACT_VALUES = 1_000_000
_SHIP_VALUES = _EXACT_VALUES


@dataclass(frozen=True)
class StatsPlan:
    """Which statistics to compute: numeric columns get moments and a quantile sketch;
    ``counted`` columns get value counts."""

    numeric: list[str]
    counted: list[str]


@dataclass
class ColumnStats:
    n: int = 0
    total: float = 0.0
    m2: float = 0.0
    """Sum of squared deviations from the mean, merged with Chan et al.'s parallel update:
    ``sumsq / n - mean**2`` cancels catastrophically when the mean dwarfs the spread."""
    sketch: Any = None
    values: list[np.ndarray] = field(default_factory=list)
    """Present values, kept exactly while few (see ``_EXACT_VALUES``); else in ``sketch``."""
    counts: Counter[Any] = field(default_factory=Counter)

    def _to_sketch(self) -> Any:
        if self.sketch is None:
            self.sketch = _new_sketch()
        for v in self.values:
            self.sketch.update(np.ascontiguousarray(v))
        self.values = []
        return self.sketch

    def add_values(self, values: list[np.ndarray]) -> None:
        held = sum(len(v) for v in self.values) + sum(len(v) for v in values)
        if self.sketch is None and held <= _EXACT_VALUES:
            self.values.extend(values)
            return
        sketch = self._to_sketch()
        for v in values:
            sketch.update(np.ascontiguousarray(v))

    def add_sketch(self, sketch: Any) -> None:
        if self.sketch is None and not self.values:
            self.sketch = sketch
            return
        self._to_sketch().merge(sketch)

    def __getstate__(self) -> dict[str, Any]:
        # DataSketches objects do not pickle; their own serialised form travels instead.
        state = dict(self.__dict__)
        state["sketch"] = None if self.sketch is None else self.sketch.serialize()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state["sketch"] is not None:
            from datasketches import kll_doubles_sketch

            state["sketch"] = kll_doubles_sketch.deserialize(state["sketch"])
        self.__dict__.update(state)

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def std(self) -> float | None:
        """Population standard deviation of the present values."""
        if not self.n:
            return None
        return float(np.sqrt(max(self.m2 / self.n, 0.0)))

    def quantiles(self, qs: list[float]) -> list[float] | None:
        if self.sketch is None and self.values:
            exact = np.quantile(np.concatenate(self.values), qs)  # numpy/pandas default: linear
            return [float(v) for v in exact]
        if self.sketch is None or self.sketch.is_empty():
            return None
        return [float(v) for v in self.sketch.get_quantiles(qs)]

    def top(self) -> dict[str, list[Any]]:
        """Value counts in the shape of Ray's ValueCounter result."""
        return {"values": list(self.counts), "counts": list(self.counts.values())}


@dataclass
class TableStats:
    rows: int = 0
    columns: dict[str, ColumnStats] = field(default_factory=dict)

    def merge(self, other: TableStats) -> TableStats:
        self.rows += other.rows
        for name, theirs in other.columns.items():
            mine = self.columns.setdefault(name, ColumnStats())
            if theirs.n:
                n = mine.n + theirs.n
                delta = theirs.total / theirs.n - (mine.total / mine.n if mine.n else 0.0)
                mine.m2 += theirs.m2 + delta * delta * mine.n * theirs.n / n
                mine.n = n
                mine.total += theirs.total
            mine.counts.update(theirs.counts)
            if theirs.values:
                mine.add_values(theirs.values)
            if theirs.sketch is not None:
                mine.add_sketch(theirs.sketch)
        return self


def _new_sketch() -> Any:
    from datasketches import kll_doubles_sketch

    return kll_doubles_sketch(_KLL_K)


def table_stats(table: pa.Table, plan: StatsPlan) -> TableStats:
    """The statistics of one batch (missing values — null or NaN — are not counted)."""
    out = TableStats(rows=table.num_rows)
    for c in plan.numeric:
        v = pc.cast(table.column(c), pa.float64()).to_numpy()
        v = v[~np.isnan(v)]
        st = out.columns.setdefault(c, ColumnStats())
        st.n, st.total = len(v), float(v.sum())
        if len(v):
            d = v - v.mean()
            st.m2 = float(np.dot(d, d))
            if len(v) <= _SHIP_VALUES:
                st.values = [v.copy()]
            else:
                st.sketch = _new_sketch()
                st.sketch.update(np.ascontiguousarray(v))
    for c in plan.counted:
        counts = pc.value_counts(table.column(c))
        st = out.columns.setdefault(c, ColumnStats())
        for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                            strict=True):
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                st.counts[value] += n
    return out


def _batch(table: pa.Table, plan: StatsPlan) -> dict[str, Any]:
    return {"stats": np.array([table_stats(table, plan)], dtype=object)}


def collect_stats(ds: Dataset, plan: StatsPlan) -> TableStats:
    """Statistics of the whole Dataset: one pass, merged on the driver as batches finish."""
    from functools import partial

    total = TableStats()
    parts = ds.map_batches(partial(_batch, plan=plan), batch_format="pyarrow",
                           zero_copy_batch=True)
    for row in parts.iter_rows():
        total.merge(row["stats"])
    return total
