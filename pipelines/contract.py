"""Infer a data contract (the config's ``schema:`` section) from a data profile.

The inferred contract is a starting point the user edits: it accepts the data it was inferred
from (a round-trip test holds it to that) and rejects what falls outside it — values beyond the
observed range plus a margin, unseen categories, missing values where none were seen.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from pipelines.config import ColumnContract, ProfileConfig, SchemaConfig
from pipelines.profile import ColumnProfile, DataProfile

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["contract_yaml", "find_unique_key", "infer_column", "infer_contract", "key_candidates"]

logger = logging.getLogger(__name__)

_TYPES = {"int": "int", "float": "float", "bool": "bool", "string": "string", "datetime": "datetime"}


def _round_out(x: float, up: bool, digits: int = 3) -> float:
    """Round ``x`` away from the data to ``digits`` significant digits, so bounds read well."""
    if x == 0 or not math.isfinite(x):
        return x
    scale = 10 ** (math.floor(math.log10(abs(x))) - digits + 1)
    value = (math.ceil(x / scale) if up else math.floor(x / scale)) * scale
    return float(f"{value:.{digits + 2}g}")  # drop the binary noise of the multiplication


def _bounds(col: ColumnProfile, margin: float, whole: bool) -> tuple[float, float]:
    lo, hi = float(col.min), float(col.max)  # type: ignore[arg-type]
    spread = (hi - lo) * margin or abs(hi) * margin or margin
    new_lo, new_hi = lo - spread, hi + spread
    if lo >= 0:  # a column without negative values is taken to be non-negative by nature
        new_lo = max(0.0, new_lo)
    new_lo, new_hi = _round_out(new_lo, up=False), _round_out(new_hi, up=True)
    if whole:
        new_lo, new_hi = float(math.floor(new_lo)), float(math.ceil(new_hi))
    return min(new_lo, lo), max(new_hi, hi)


def infer_column(col: ColumnProfile, settings: ProfileConfig) -> ColumnContract | None:
    """The contract of one column, or None when its type cannot be checked (nested, all null)."""
    kind = _TYPES.get(col.kind)
    if kind is None:
        return None
    rules: dict[str, Any] = {"type": kind, "nullable": col.nulls > 0}
    if kind in ("int", "float") and col.min is not None and col.max is not None:
        rules["min"], rules["max"] = _bounds(col, settings.range_margin, whole=kind == "int")
    if (kind == "string" and col.top_values_complete
            and 0 < len(col.top_values) <= settings.max_allowed_values):
        # validate compares trimmed, lower-cased values, so spelling variants collapse here
        rules["allowed"] = sorted({t.value.strip().lower() for t in col.top_values})
    return ColumnContract(**rules)


def infer_contract(profile: DataProfile, settings: ProfileConfig | None = None,
                   unique_key: list[str] | None = None) -> SchemaConfig:
    """A contract every row of the profiled data meets (unique_key must have been verified)."""
    settings = settings or ProfileConfig()
    columns = {}
    for name, col in profile.columns.items():
        contract = infer_column(col, settings)
        if contract is None:
            logger.warning("column %s (%s) is left out of the contract: its type cannot be "
                           "checked", name, col.kind)
        else:
            columns[name] = contract
    return SchemaConfig(columns=columns, unique_key=list(unique_key or []))


def key_candidates(profile: DataProfile) -> list[str]:
    """Columns that may identify a row: no missing values and (about) all values distinct."""
    found = [c for c in profile.columns.values()
             if c.kind in ("string", "int") and c.nulls == 0 and c.count > 1
             and c.distinct >= 0.98 * c.count]
    # names that say "id" first, then the most distinct
    found.sort(key=lambda c: (not c.name.lower().endswith("id"), -c.distinct / c.count, c.name))
    return [c.name for c in found]


def find_unique_key(ds: Dataset, profile: DataProfile) -> tuple[list[str], dict[str, int]]:
    """The first candidate key that is exactly unique in ``ds``; for the others, how many rows
    repeat a value already seen.

    Where the profile counted a column's values exactly (below 4096 of them) that count
    decides; above, the count is an estimate, so the candidate is checked with a Ray Data
    group-by (a shuffle; no key set is ever held in one place).
    """
    from pipelines.stages.validate import key_partitions

    repeats: dict[str, int] = {}
    for name in key_candidates(profile)[:3]:
        col = profile.columns[name]
        if col.distinct_exact:  # the profile counted this column's values exactly: no shuffle
            if col.distinct == col.count:
                return [name], repeats
            repeats[name] = col.count - col.distinct
            continue
        counts = ds.select_columns([name]).groupby(name, num_partitions=key_partitions()).count()
        repeated = counts.filter(lambda row: row["count()"] > 1).materialize()
        if repeated.count() == 0:
            return [name], repeats
        repeats[name] = int(repeated.sum("count()")) - repeated.count()
    return [], repeats


def contract_yaml(schema: SchemaConfig, profile: DataProfile, source: str,
                  key_repeats: dict[str, int] | None = None) -> str:
    """The contract as YAML to paste under the config's ``schema:`` key, with review notes."""
    notes = [
        f"Data contract inferred by `raypipe profile` from {source}",
        f"({profile.rows} rows, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC). Review it, then use the",
        "`schema:` block in the pipeline config. Rules per column: type (int, float, string, bool,",
        "datetime), nullable, min/max (numbers), allowed (strings; compared trimmed and",
        "lower-cased), regex (strings; every value must match in full), e.g.",
        "    code: {type: string, regex: '[A-Z]{2}-\\d{4}'}",
        "Ranges are the observed ones widened by schema.profile.range_margin on each side.",
    ]
    if schema.unique_key:
        notes.append(f"unique_key {schema.unique_key} was checked to be unique in this data.")
    for name, repeated in (key_repeats or {}).items():
        notes.append(f"{name} looks like a key, but {repeated} rows repeat one of its values: "
                     "no unique_key is set for it.")
    if profile.anomalies:
        notes.append("Anomalies found (see the quality report):")
        notes += [f"  - {a.message}" for a in profile.anomalies]
    body = {"schema": {
        "max_quarantine_fraction": schema.max_quarantine_fraction,
        **({"unique_key": list(schema.unique_key)} if schema.unique_key else {}),
        "columns": {name: c.model_dump(exclude_none=True) for name, c in schema.columns.items()},
    }}
    header = "".join(f"# {line}\n" for line in notes)
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=100)
