"""Names that become registry entries and path segments: the pipeline name, the registered
model, its aliases and versions, and the ``models:/`` URIs made of them.

A registered model name becomes a folder name (request logs, outputs, the stage cache) and part
of registry URLs, so one rule keeps every such name a single, visible path segment: no ``/``,
no leading ``.``, nothing a file system or URL reads specially. A ``models:/`` URI given on the
command line or to the Serve app builder obeys the same rule as a name in the config.
"""

from __future__ import annotations

import re

from pipelines.config.base import ConfigError

__all__ = ["ModelUriError", "check_alias", "check_name", "parse_model_uri"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME_RULE = ("must start with a letter or digit and use only letters, digits, '_', '.', '-' "
              "(at most 64 characters)")
# MLflow's own alias rule ([\w-]), ASCII only; 255 is MLflow's length limit.
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ALIAS_RULE = "must be 1-255 letters, digits, '_' or '-'"
_VERSION = re.compile(r"^[0-9]{1,18}$")


class ModelUriError(ConfigError):
    """A ``models:/`` URI whose name, alias or version breaks the naming rules."""


def check_name(value: str) -> str:
    """``value`` if it is a valid pipeline or registered model name, else ``ValueError``."""
    if not _NAME.match(value):
        raise ValueError(f"{value!r} {_NAME_RULE}")
    return value


def check_alias(value: str) -> str:
    """``value`` if it is a valid registry alias, else ``ValueError``."""
    if not _ALIAS.match(value):
        raise ValueError(f"alias {value!r} {_ALIAS_RULE}")
    return value


def parse_model_uri(model_uri: str) -> tuple[str | None, str | None, str | None]:
    """``(name, version, alias)`` of a ``models:/`` URI; all None for other URIs.

    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (digits) and MLflow's logged-model
    ``models:/ID`` are accepted; anything else raises :class:`ModelUriError` naming the part.
    """
    if not model_uri.startswith("models:/"):
        return None, None, None
    ref = model_uri.removeprefix("models:/").strip("/")
    alias: str | None = None
    version: str | None = None
    if "@" in ref:
        name, alias = ref.split("@", 1)
    else:
        name, _, rest = ref.partition("/")
        version = rest or None
    problem = None
    if not _NAME.match(name):
        problem = f"the registered model name {name!r} {_NAME_RULE}"
    elif alias is not None and not _ALIAS.match(alias):
        problem = f"the alias {alias!r} {_ALIAS_RULE}"
    elif version is not None and not _VERSION.match(version):
        problem = f"the version {version!r} must be a number"
    if problem:
        raise ModelUriError(f"{model_uri!r}: {problem} (models:/NAME@ALIAS or "
                            "models:/NAME/VERSION)")
    return name, version, alias
