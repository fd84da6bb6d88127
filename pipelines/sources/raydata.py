"""``kind: raydata``: any ``ray.data.read_*`` function, by name, with its keyword arguments.

Every Ray Data connector (JSON Lines, SQL over any DB-API driver, Delta, Iceberg, Avro, ...)
then feeds the pipeline's contract, quarantine and fingerprint like the built-in kinds. The
arguments are checked against the reader's signature when the config loads, read from the
source of ``ray.data.read_api`` so that checking a config does not import Ray (seconds on a
small machine); only where that file cannot be read is ``ray.data`` imported instead.

Fingerprint: a reader given ``paths`` is fingerprinted by its files' names and bytes (as
``kind: files``) and read lazily; any other reader (a database, a table format's catalog) is
read once into a snapshot in the object store, which is hashed and then read by the stages,
so the data fingerprinted are the data validated.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from pipelines.config.base import _Section
from pipelines.config.sources import SourceConfig, _check_env_name
from pipelines.lineage import fingerprint_dataset, fingerprint_files
from pipelines.redact import SENSITIVE_NAMES, redact
from pipelines.sources._errors import InputError
from pipelines.sources.base import SourceReader
from pipelines.sources.files import resolve_paths
from pipelines.storage.shared import Location

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["Factory", "RayDataReader", "RayDataSource", "ReaderSignature", "reader_signatures"]

_UNUSABLE = {"read_datasource": "it takes a Datasource object, which a YAML file cannot hold; "
                                "write a source kind for it (see README, Extending raypipe)"}
_EnvName = Annotated[str, AfterValidator(_check_env_name)]
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*([.:][A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class ReaderSignature:
    """What a reader function accepts, as far as keyword arguments go."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    any_keyword: bool
    """It takes ``**kwargs`` (passed on to pyarrow): other names cannot be checked."""


def _from_ast(fn: ast.FunctionDef) -> ReaderSignature:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    with_default = len(a.defaults)
    required = [p.arg for p in positional[:len(positional) - with_default]]
    required += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None]
    names = [p.arg for p in positional] + [p.arg for p in a.kwonlyargs]
    return ReaderSignature(tuple(names), tuple(required), a.kwarg is not None)


def _from_function(fn: Any) -> ReaderSignature:
    params = inspect.signature(fn).parameters.values()
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return ReaderSignature(tuple(p.name for p in named),
                           tuple(p.name for p in named if p.default is p.empty),
                           any(p.kind is p.VAR_KEYWORD for p in params))


@functools.cache
def reader_signatures() -> dict[str, ReaderSignature]:
    """Every ``ray.data.read_*`` function's signature, by name."""
    ray_spec = importlib.util.find_spec("ray")  # finds the package without importing it
    origin = Path(ray_spec.origin) if ray_spec and ray_spec.origin else None
    read_api = origin.parent / "data" / "read_api.py" if origin else None
    if read_api is not None and read_api.is_file():
        tree = ast.parse(read_api.read_text(encoding="utf-8"))
        found = {node.name: _from_ast(node) for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name.startswith("read_")}
        if found:
            return found
    import ray.data  # a packaging without sources (zipped, compiled): ask the functions

    return {name: _from_function(getattr(ray.data, name)) for name in dir(ray.data)
            if name.startswith("read_") and callable(getattr(ray.data, name))}


def _refuse_secrets(where: str, args: dict[str, Any]) -> None:
    for name, value in args.items():
        if name.lower() in SENSITIVE_NAMES:
            raise ValueError(f"{where}.{name} is a secret: put the name of an environment "
                             f"variable holding it in {where}_env instead")
        text = json.dumps(value, default=str)
        if redact(text) != text:
            raise ValueError(f"{where}.{name} holds a credential (a password in a URL, a "
                             f"token); put it in an environment variable and name it in "
                             f"{where}_env")


def _env_values(where: str, names: dict[str, str]) -> dict[str, str]:
    values = {}
    for name, env in names.items():
        value = os.environ.get(env)
        if value is None:
            raise InputError(f"{where}.{name}: environment variable {env} is not set")
        values[name] = value
    return values


class Factory(_Section):
    """A callable the reader calls with no arguments (``read_sql``'s ``connection_factory``):
    ``function`` with ``args`` and the ``args_env`` values bound."""

    function: str = Field(description="Dotted path of the function: sqlite3.connect, "
                          "psycopg.connect, snowflake.connector.connect ...")
    args: dict[str, Any] = Field(default_factory=dict,
                                 description="Keyword arguments it is called with (no secrets).")
    args_env: dict[str, _EnvName] = Field(
        default_factory=dict, description="Keyword arguments whose values are secrets: name -> "
        "environment variable holding the value, read on the driver when the run starts.")

    @field_validator("function")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not _DOTTED.match(v):
            raise ValueError(f"{v!r} is not a dotted path to a function (e.g. sqlite3.connect)")
        return v.replace(":", ".")

    def bind(self, where: str) -> functools.partial[Any]:
        module, _, name = self.function.rpartition(".")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise InputError(f"{where}.function: cannot import {self.function}: {err}") from err
        return functools.partial(fn, **self.args, **_env_values(f"{where}.args_env", self.args_env))


class RayDataSource(SourceConfig):
    """Any Ray Data reader: ``ray.data.<reader>(**args)``.

    For example JSON Lines files (``reader: read_json``, ``args: {paths: data/*.jsonl,
    lines: true}``), SQL through any DB-API driver (``reader: read_sql``, ``args: {sql:
    ...}``, ``factories: {connection_factory: {function: sqlite3.connect, args: {database:
    shop.db}}}``) or a Delta table (``reader: read_delta``, ``args: {path: ...}``).
    """

    kind: Literal["raydata"] = "raydata"
    reader: str = Field(description="A ray.data reader function's name: read_json, read_csv, "
                        "read_sql, read_delta, read_iceberg, read_avro ...")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Its keyword arguments, checked against its "
        "signature when the config loads. `paths` (a file, folder or glob, or a list of them) "
        "is expanded as in kind files, and the source is then fingerprinted by those files. "
        "No secrets: see args_env.")
    args_env: dict[str, _EnvName] = Field(
        default_factory=dict, description="Arguments whose values are secrets: name -> "
        "environment variable holding the value, read on the driver when the run starts; "
        "never logged.")
    factories: dict[str, Factory] = Field(
        default_factory=dict, description="Arguments the reader takes as a callable of no "
        "arguments (read_sql's connection_factory): name -> {function, args, args_env}.")

    @model_validator(mode="after")
    def _check_call(self) -> RayDataSource:
        _refuse_secrets("source.args", self.args)
        for name, factory in self.factories.items():
            _refuse_secrets(f"source.factories.{name}.args", factory.args)
        signatures = reader_signatures()
        if self.reader in _UNUSABLE:
            raise ValueError(f"reader {self.reader}: {_UNUSABLE[self.reader]}")
        sig = signatures.get(self.reader)
        if sig is None:
            raise ValueError(f"reader {self.reader!r} is not a ray.data reader; choose from "
                             f"{', '.join(sorted(set(signatures) - set(_UNUSABLE)))}")
        given: dict[str, str] = {}
        for section in ("args", "args_env", "factories"):
            for name in getattr(self, section):
                if name in given:
                    raise ValueError(f"{name!r} is in both source.{given[name]} and "
                                     f"source.{section}; give it once")
                given[name] = section
                if name not in sig.names and not sig.any_keyword:
                    raise ValueError(f"source.{section}.{name}: {self.reader} has no argument "
                                     f"{name!r}; it takes {', '.join(sig.names)}")
        missing = [n for n in sig.required if n not in given]
        if missing:
            raise ValueError(f"{self.reader} needs {', '.join(missing)}: give "
                             f"{'them' if len(missing) > 1 else 'it'} in source.args (a "
                             "callable in source.factories)")
        return self


class RayDataReader(SourceReader[RayDataSource]):
    """``kind: raydata``: read by the named ``ray.data`` reader; with ``paths``, lazily and
    fingerprinted by the files, otherwise once into a snapshot that is hashed."""

    kind = "raydata"
    config_type = RayDataSource
    snapshot = True

    def _paths(self) -> list[str] | None:
        given = self.config.args.get("paths")
        if given is None:
            return None
        return [f for p in ([given] if isinstance(given, str) else given)
                for f in resolve_paths(str(p))]

    def _label(self) -> str:
        given = self.config.args.get("paths")
        if given is not None:
            return given if isinstance(given, str) else ",".join(map(str, given))
        args = json.dumps(self.config.args, sort_keys=True, default=str)
        return f"ray.data.{self.config.reader}:{args}"

    def read(self) -> Dataset:
        import ray.data

        cfg = self.config
        paths = self._paths()
        kwargs = {**cfg.args, **_env_values("source.args_env", cfg.args_env),
                  **{name: f.bind(f"source.factories.{name}") for name, f in cfg.factories.items()}}
        if paths is not None:
            kwargs["paths"] = paths
        try:
            ds: Dataset = getattr(ray.data, cfg.reader)(**kwargs)
            return ds if paths is not None else ds.materialize()
        except InputError:
            raise
        except Exception as err:  # Ray wraps the connector's error; say which reader it was
            raise InputError(f"source.reader {cfg.reader} cannot read: "
                             f"{redact(' '.join(str(err).split()))}") from err

    def fingerprint(self, dataset: Dataset | None = None) -> tuple[str, str]:
        paths = self._paths()
        if paths is not None:
            return self._label(), fingerprint_files(paths)
        return self._label(), fingerprint_dataset(
            dataset if dataset is not None else self.read(), self._label())

    def rows(self, dataset: Dataset | None) -> int | None:
        if self.config.args.get("paths") is None and dataset is not None:
            return dataset.count()  # a materialised snapshot: the count is metadata
        return None

    def locations(self) -> list[Location]:
        given = self.config.args.get("paths")
        if given is None:
            return []
        return [Location("source.args.paths", str(p))
                for p in ([given] if isinstance(given, str) else given)]
