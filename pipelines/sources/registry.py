"""Source kinds by name: built-in readers imported on first use, plugins registered or installed.

Importing this module imports no reader, no Ray and no pyarrow: the built-in kinds are a
table of ``"module:Class"`` names, imported when a config of that kind is first read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from pipelines.config.base import ConfigError
from pipelines.config.sources import (
    BUILTIN_MODULE_KINDS,
    SOURCE_ENTRY_POINTS,
    SourceConfig,
    register_source_config,
    source_kinds,
)
from pipelines.plugins import import_ref, load_entry_point, ref_of
from pipelines.sources.base import SourceReader
from pipelines.storage.location import Where, storage_path

__all__ = ["SourceKindError", "get_reader", "reader_class", "register_source", "source_kinds"]

_BUILTIN: dict[str, str] = {
    "demo": "pipelines.sources.demo:DemoReader",
    "files": "pipelines.sources.files:FileReader",
    "sql": "pipelines.sources.sql:SqlReader",
    "http": "pipelines.sources.http:HttpReader",
    **BUILTIN_MODULE_KINDS,  # raydata: its settings model lives with its reader
}

ReaderT = TypeVar("ReaderT", bound=type[SourceReader[Any]])

_READERS: dict[str, type[SourceReader[Any]]] = {}


class SourceKindError(ConfigError):
    """A source kind that no reader handles, or one claimed by two reader classes."""


def _register(reader_cls: type[SourceReader[Any]], replace: bool) -> None:
    if not (isinstance(reader_cls, type) and issubclass(reader_cls, SourceReader)):
        raise SourceKindError(f"{reader_cls!r} is not a SourceReader subclass")
    kind = getattr(reader_cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise SourceKindError(f"{reader_cls.__qualname__} has no kind: set the class attribute "
                              "kind to the name configs use in source.kind")
    if not isinstance(getattr(reader_cls, "config_type", None), type):
        raise SourceKindError(f"{reader_cls.__qualname__} has no config_type: set it to the "
                              "SourceConfig subclass of its settings")
    current = _READERS.get(kind)
    if current is reader_cls:
        return
    own = _BUILTIN.get(kind) == ref_of(reader_cls)  # a built-in reader, imported directly
    if not replace and (current is not None or (kind in _BUILTIN and not own)):
        holder = ref_of(current) if current is not None else _BUILTIN[kind]
        raise SourceKindError(f"source kind {kind!r} is already handled by {holder}; pass "
                              f"replace=True to replace it with {ref_of(reader_cls)}")
    if not own or kind in BUILTIN_MODULE_KINDS:  # the other built-ins are the config's union
        register_source_config(kind, reader_cls.config_type, replace=replace)
    _READERS[kind] = reader_cls


@overload
def register_source(reader_cls: ReaderT, *, replace: bool = False) -> ReaderT: ...


@overload
def register_source(reader_cls: None = None, *,
                    replace: bool = False) -> Callable[[ReaderT], ReaderT]: ...


def register_source(reader_cls: ReaderT | None = None, *,
                    replace: bool = False) -> ReaderT | Callable[[ReaderT], ReaderT]:
    """Make ``reader_cls`` the reader of ``source.kind: <reader_cls.kind>``.

    Use as ``@register_source`` (or ``@register_source(replace=True)``) on the class, or call
    it. Its :attr:`~SourceReader.config_type` is registered with the config at the same time,
    so configs of that kind validate from then on. Registering the same class again is a
    no-op; another class for a taken kind (built-in or registered) needs ``replace=True``.

    Registration lives in this process: a CLI run or a ``ray job submit`` entrypoint finds a
    plugin through its ``raypipe.sources`` entry point instead.
    """
    def decorate(cls: ReaderT) -> ReaderT:
        _register(cls, replace)
        return cls

    return decorate if reader_cls is None else decorate(reader_cls)


def reader_class(kind: str) -> type[SourceReader[Any]]:
    """The reader class of ``kind``: registered, built in, else an installed entry point.

    Raises:
        SourceKindError: no reader handles ``kind``; the message lists the known kinds.
    """
    found = _READERS.get(kind)
    if found is not None:
        return found
    if kind in _BUILTIN:
        cls: type[SourceReader[Any]] = import_ref(_BUILTIN[kind])
        _READERS[kind] = cls
        return cls
    loaded = load_entry_point(SOURCE_ENTRY_POINTS, kind)  # importing it may register it
    if kind not in _READERS and loaded is not None:
        _register(loaded, replace=False)
    if kind not in _READERS:
        raise SourceKindError(f"unknown source kind {kind!r}; choose from "
                              f"{', '.join(source_kinds())}, or register a reader for it "
                              f"(register_source, or a {SOURCE_ENTRY_POINTS} entry point)")
    return _READERS[kind]


def get_reader(config: SourceConfig, work_dir: Where) -> SourceReader[Any]:
    """The reader of ``config`` (picked by ``config.kind``), for a run whose work dir is
    ``work_dir``. Nothing is read yet.

    Raises:
        SourceKindError: no reader handles the kind.
    """
    cls = reader_class(config.kind)
    if not isinstance(config, cls.config_type):
        raise SourceKindError(f"source kind {config.kind!r}: {cls.__qualname__} reads "
                              f"{cls.config_type.__qualname__} settings, got "
                              f"{type(config).__qualname__}")
    return cls(config, storage_path(work_dir))
