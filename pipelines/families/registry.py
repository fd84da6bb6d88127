"""Model families by name: the built-in ones, those registered in this process, and plugins.

A family joins by :func:`register_family` (in the process that builds the config and runs the
pipeline) or, for the CLI and ``ray job submit``, through a ``raypipe.families`` entry point of
an installed package. Names are the keys of ``train.families`` and of each family's
``train.<name>`` section.

Other processes (Tune trials, Ray Train workers, batch actors, Serve replicas) never look a
family up by name in this registry: the sweep hands them the family object itself, and a saved
model folder records the family's class (``family.json``), which :func:`load_predictor`
imports where the model is loaded, as MLflow's pyfunc imports a model's loader module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pipelines.errors import RaypipeError
from pipelines.families.base import Family, Predictor
from pipelines.plugins import entry_point_names, import_ref, load_entry_point, ref_of

__all__ = [
    "BUILTIN_FAMILIES",
    "ENTRY_POINT_GROUP",
    "UnknownFamilyError",
    "families_for",
    "family_names",
    "get_family",
    "load_predictor",
    "register_family",
    "saved_family",
    "write_family_marker",
]

ENTRY_POINT_GROUP = "raypipe.families"
MARKER = "family.json"

# name -> "module:Class", imported on first use: listing the names imports no ML library.
BUILTIN_FAMILIES: dict[str, str] = {
    "xgboost": "pipelines.families.xgb:XGBoostFamily",
    "mlp": "pipelines.families.mlp:MLPFamily",
    "linear": "pipelines.families.linear:LinearFamily",
}

_registered: dict[str, Family] = {}

_F = TypeVar("_F")


class UnknownFamilyError(RaypipeError, ValueError):
    """No family of this name is built in, registered or installed as a plugin."""


def _instance(obj: Any) -> Family:
    return obj() if isinstance(obj, type) else obj


def register_family(family: _F, *, replace: bool = False) -> _F:
    """Make a family known by its ``name``; a class (built with no arguments) or an instance.

    Returns its argument, so it also works as a class decorator. A name already taken by
    another family, built in or registered, is refused unless ``replace``.

    Raises:
        ValueError: the name is taken, or the object lacks what a family must provide.
    """
    instance = _instance(family)
    missing = [a for a in ("name", "fit", "save", "load", "importances") if not hasattr(instance, a)]
    if missing:
        raise ValueError(f"{family!r} is not a model family: it lacks {', '.join(missing)}")
    name = instance.name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{family!r}: a family's name must be a Python identifier (it names "
                         f"the train.<name> section), got {name!r}")
    taken = _registered.get(name)
    if not replace and ((taken is not None and type(taken) is not type(instance))
                        or name in BUILTIN_FAMILIES):
        raise ValueError(f"model family {name!r} is already registered; pass replace=True "
                         "to replace it")
    _registered[name] = instance
    return family


def family_names() -> tuple[str, ...]:
    """Every family name a config may use: built-in, registered here, installed as a plugin
    (listed without importing it)."""
    names = dict.fromkeys([*BUILTIN_FAMILIES, *_registered,
                           *entry_point_names(ENTRY_POINT_GROUP)])
    return tuple(names)


def get_family(name: str) -> Family:
    """The family called ``name``.

    Raises:
        UnknownFamilyError: no such family; the message lists the known ones.
        pipelines.plugins.PluginError: its entry point is installed but cannot be imported.
    """
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_FAMILIES:
        return _instance(import_ref(BUILTIN_FAMILIES[name]))
    plugin = load_entry_point(ENTRY_POINT_GROUP, name)
    if plugin is not None:
        family = _instance(plugin)
        if getattr(family, "name", None) != name:
            raise UnknownFamilyError(f"{ENTRY_POINT_GROUP} entry point {name!r} is the family "
                                     f"{getattr(family, 'name', None)!r}; the names must agree")
        register_family(family)
        return family
    raise UnknownFamilyError(f"unknown model family {name!r}; choose from "
                             f"{', '.join(family_names())}")


def write_family_marker(directory: Path, family: Family) -> None:
    """Record which family saved ``directory``: its name and its importable class."""
    (directory / MARKER).write_text(json.dumps({"family": family.name,
                                                "class": ref_of(type(family))}))


def _from_marker(marker: dict[str, Any]) -> Family:
    name = str(marker["family"])
    try:
        return get_family(name)
    except UnknownFamilyError:
        ref = marker.get("class")
        if not ref:  # a folder written before families recorded their class
            raise
    # A plugin family registered in the process that trained the model, not here: import the
    # class the folder names. It must still be a family of the same name.
    try:
        family = _instance(import_ref(str(ref)))
    except (ImportError, AttributeError) as err:
        raise UnknownFamilyError(
            f"the model was saved by family {name!r} ({ref}), which cannot be imported here: "
            f"{err}; install the package that provides it") from err
    if getattr(family, "name", None) != name or not hasattr(family, "load"):
        raise UnknownFamilyError(f"{ref} is not the model family {name!r} the model names")
    return family


def saved_family(directory: Path) -> Family:
    """The family that saved the model in ``directory`` (see :func:`write_family_marker`)."""
    return _from_marker(json.loads((directory / MARKER).read_text()))


def load_predictor(directory: Path) -> Predictor:
    """Load the model saved in ``directory`` by whichever family wrote it."""
    return saved_family(directory).load(directory)


def families_for(names: list[str]) -> dict[str, Family]:
    """The family objects of ``names``, looked up here to be handed to other processes."""
    return {name: get_family(name) for name in names}

