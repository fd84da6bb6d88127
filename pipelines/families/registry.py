"""Family lookup by name, and loading a saved model folder."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.families.base import Family, Predictor

__all__ = ["FAMILY_NAMES", "get_family", "load_predictor", "write_family_marker"]

FAMILY_NAMES = ("xgboost", "mlp", "linear")
MARKER = "family.json"


def get_family(name: str) -> Family:
    if name == "xgboost":
        from pipelines.families.xgb import XGBoostFamily

        return XGBoostFamily()
    if name == "mlp":
        from pipelines.families.mlp import MLPFamily

        return MLPFamily()
    if name == "linear":
        from pipelines.families.linear import LinearFamily

        return LinearFamily()
    raise ValueError(f"unknown model family {name!r}; choose from {', '.join(FAMILY_NAMES)}")


def write_family_marker(directory: Path, name: str) -> None:
    (directory / MARKER).write_text(json.dumps({"family": name}))


def load_predictor(directory: Path) -> Predictor:
    """Load the model saved in ``directory`` by whichever family wrote it."""
    name = json.loads((directory / MARKER).read_text())["family"]
    return get_family(name).load(directory)
