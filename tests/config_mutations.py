"""Generated bad configs: the bundled demo config (which sets every section) with one defect.

Each mutation returns the broken mapping and the dotted field path an error must name. Used by
the property test over ``parse_config`` and by the CLI test that feeds files to ``raypipe``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import yaml

from pipelines.config import demo_config_path

Mutation = tuple[str, dict[str, Any], str]  # (kind, config, field path the error must name)

# A field that takes any mapping, or any value, holds no fields of its own to break.
_FREE_FORM = {"impute_columns", "column_types", "params", "headers", "columns", "search_space",
              "fixed", "derived", "slices", "metrics"}
_NOT_A_SCALAR: list[Any] = [{"nested": [1, 2]}, [[1], {"a": None}]]
_DIMS = {
    "low above high": lambda: {"type": "uniform", "low": 2.0, "high": 1.0},
    "loguniform from 0": lambda: {"type": "loguniform", "low": 0, "high": 1},
    "unknown type": lambda: {"type": "gaussian", "low": 0, "high": 1},
    "no type": lambda: {"low": 0, "high": 1},
    "empty choice": lambda: {"type": "choice", "values": []},
    "text bounds": lambda: {"type": "randint", "low": "one", "high": 5},
}


def demo_data() -> dict[str, Any]:
    data = yaml.safe_load(demo_config_path().read_text())
    assert isinstance(data, dict)
    return data


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), value
            if key not in _FREE_FORM:
                yield from _walk(value, (*path, key))


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for p in path:
        data = data[p]
    return data


KINDS = ("unknown key", "wrong type", "missing required", "bad search space")


def mutate(rng: random.Random, base: dict[str, Any] | None = None,
           kind: str | None = None) -> Mutation:
    """One defect of ``kind`` (default: drawn), drawn by ``rng``, in a copy of ``base`` (default:
    the demo config)."""
    data = copy.deepcopy(base if base is not None else demo_data())
    fields = list(_walk(data))
    sections = [p for p, v in fields if isinstance(v, dict) and p[-1] not in _FREE_FORM]
    scalars = [p for p, v in fields if not isinstance(v, dict | list) and p[-1] not in _FREE_FORM]
    kind = kind or rng.choice(KINDS)
    if kind == "unknown key":
        path = rng.choice([(), *sections])
        key = "zz_" + "".join(rng.choice("abcdefgh_") for _ in range(rng.randint(1, 8)))
        (_get(data, path) if path else data)[key] = rng.choice([1, "x", None, [1], {"a": 1}])
        return kind, data, ".".join((*path, key))
    if kind == "wrong type":
        path = rng.choice(scalars)
        value = _get(data, path)
        bad = rng.choice(_NOT_A_SCALAR)
        if isinstance(value, bool | int | float) and not isinstance(value, bool) and rng.random() < .5:
            bad = "not-a-number"
        _get(data, path[:-1])[path[-1]] = bad
        return kind, data, ".".join(path)
    if kind == "missing required":
        field = rng.choice(["name", "source", "target"])
        del data[field]
        return kind, data, field
    families = [f for f, v in data["train"].items() if isinstance(v, dict) and "search_space" in v]
    family = rng.choice(families)
    space = data["train"][family]["search_space"]
    dim = rng.choice(sorted(space))
    space[dim] = _DIMS[rng.choice(sorted(_DIMS))]()
    return kind, data, f"train.{family}.search_space.{dim}"
