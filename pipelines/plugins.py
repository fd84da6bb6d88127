"""Plugins installed as Python entry points, found by name and imported only when asked for.

A user of the CLI or of ``ray job submit`` cannot run code before the config is read; a
package they install can declare, in its ``pyproject.toml``, what raypipe should import::

    [project.entry-points."raypipe.sources"]
    toy = "my_package.toy:ToyReader"
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from pipelines.errors import RaypipeError

__all__ = ["PluginError", "entry_point_names", "import_ref", "load_entry_point", "ref_of"]


class PluginError(RaypipeError, ImportError):
    """An installed entry point that cannot be imported; names the entry point and why."""


def entry_point_names(group: str) -> list[str]:
    """Names of the installed entry points of ``group`` (nothing is imported)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})


def load_entry_point(group: str, name: str) -> Any | None:
    """The object entry point ``name`` of ``group`` names (its module is imported), or None.

    Raises:
        PluginError: the entry point is installed but its module or object cannot be loaded.
    """
    for ep in importlib.metadata.entry_points(group=group, name=name):
        try:
            return ep.load()
        except Exception as err:  # whatever the plugin's import raises
            raise PluginError(f"{group} entry point {name!r} = {ep.value!r} cannot be loaded: "
                              f"{type(err).__name__}: {err}") from err
    return None


def import_ref(ref: str) -> Any:
    """The object a ``"module:qualified.name"`` reference names (its module is imported)."""
    module, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def ref_of(cls: type) -> str:
    """``"module:qualified.name"`` of ``cls``, the reference :func:`import_ref` reads back."""
    return f"{cls.__module__}:{cls.__qualname__}"
