"""The ``source`` section: where the data comes from, one model per source kind.

The built-in kinds are a discriminated union on ``kind``. A plugin kind (see
:func:`pipelines.sources.register_source`) brings its own :class:`SourceConfig` subclass,
recorded here by :func:`register_source_config` so that the config can validate it without
importing any reader: the readers import the config, never the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    PlainValidator,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from pipelines.config.base import ConfigError, _Section
from pipelines.plugins import PluginError, entry_point_names, import_ref, load_entry_point

__all__ = ["BUILTIN_MODULE_KINDS", "BUILTIN_SOURCE_KINDS", "SOURCE_ENTRY_POINTS", "AnySource",
           "DemoSource", "FileSource", "HttpSource", "Source", "SourceConfig", "SqlSource",
           "register_source_config", "source_config_type", "source_kinds"]

SOURCE_ENTRY_POINTS = "raypipe.sources"
"""Entry-point group of installed source kinds: ``<kind> = "package.module:ReaderClass"``."""

BUILTIN_MODULE_KINDS: dict[str, str] = {"raydata": "pipelines.sources.raydata:RayDataReader"}
"""Built-in kinds written as a plugin is, settings and reader in one module: imported, as an
installed entry point would be, the first time a config names the kind."""


class SourceConfig(_Section):
    """Base of every source kind's settings; ``kind`` picks the model and the reader.

    A plugin kind subclasses it with ``kind: Literal["<kind>"] = "<kind>"`` and its own
    documented fields; it is frozen and refuses unknown keys like every section.
    """

    kind: str = Field(description="The source kind: demo | files | sql | http | raydata, or a "
                      "plugin's.")


class DemoSource(SourceConfig):
    """The bundled, generated demo data set (a customer-churn-like binary problem)."""

    kind: Literal["demo"] = "demo"
    rows: int = Field(50_000, ge=100, description="Number of rows to generate.")
    seed: int = Field(7, description="Seed of the generator; the same seed gives the same data.")


class FileSource(SourceConfig):
    """Parquet, CSV or JSON Lines files: a file, a folder or a glob, on any pyarrow filesystem.

    Folders are read recursively; Hive-style folders (``year=2024/region=north/``) add their
    keys as columns. Remote URIs (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``) are read
    through pyarrow's filesystems, globs included.
    """

    kind: Literal["files"] = "files"
    path: str = Field(description="File, folder or glob pattern (local path or pyarrow URI).")
    format: Literal["parquet", "csv", "json"] = Field(
        "parquet", description="parquet | csv | json (JSON Lines: one object per line)."
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator.")
    header: bool = Field(
        True, description="CSV: the first line holds the column names. Without a header, give "
        "column_names (or columns are called f0, f1, ...).",
    )
    column_names: list[str] | None = Field(
        None, description="CSV: the column names, in order; replaces a header line when "
        "header is true, names header-less files when false.",
    )
    null_values: list[str] | None = Field(
        None, description="CSV: spellings read as missing. Default: pyarrow's (empty, NA, "
        "NULL, NaN, null, ...).",
    )
    column_types: dict[str, Literal["string", "int", "float", "bool"]] = Field(
        default_factory=dict, description="CSV: read these columns as this type instead of "
        "guessing from the first block. `string` keeps a column whose values are mostly but "
        "not all numbers, so that the data contract quarantines the odd rows.",
    )
    on_unreadable: Literal["fail", "skip"] = Field(
        "fail", description="A file that cannot be read (truncated, corrupt, not in the "
        "encoding). fail: the run stops naming it. skip: every file is checked first (one "
        "parallel pass), unreadable ones are left out and named in a warning with the reason, "
        "and the rows of the others are read.",
    )
    encoding: str = Field(
        "utf-8", description="CSV: the files' text encoding (e.g. latin-1, cp1252); they are "
        "read as UTF-8 otherwise, and text that is not is refused naming the file and column.",
    )
    partitioning: Literal["hive", "none"] = Field(
        "hive", description="hive: key=value folder names become columns (all formats).",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            return codecs.lookup(v).name
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r} (e.g. utf-8, latin-1, cp1252)") from None

    @model_validator(mode="after")
    def _check_csv(self) -> FileSource:
        csv_only = {"delimiter": self.delimiter != ",", "header": not self.header,
                    "column_names": self.column_names is not None,
                    "null_values": self.null_values is not None,
                    "column_types": bool(self.column_types),
                    "encoding": self.encoding != "utf-8"}
        misplaced = [k for k, set_ in csv_only.items() if set_]
        if self.format != "csv" and misplaced:
            raise ValueError(f"{', '.join(misplaced)} only apply to format csv")
        if self.column_names is not None and len(set(self.column_names)) != len(self.column_names):
            raise ValueError("column_names lists a name twice")
        return self


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")


def _check_env_name(v: str | None) -> str | None:
    if v is not None and not _ENV_NAME.match(v):
        raise ValueError(f"{v!r} is not an environment variable name; give the variable's name, "
                         "not its value (secrets never go in the YAML)")
    return v


class SqlSource(SourceConfig):
    """A table or query of a SQL database: SQLite (embedded) or PostgreSQL, read with Ray Data.

    With ``shard_key`` the read is split into ``parallelism`` tasks, each selecting the rows
    where ``MOD(ABS(shard_hash_fn(shard_key)), parallelism)`` equals its number; without one
    the result is read by a single task.
    """

    kind: Literal["sql"] = "sql"
    url: str = Field(
        description="Database URL: sqlite:///relative.db, sqlite:////abs/path.db, or "
        "postgresql://user@host:5432/db (also postgresql+psycopg://, and libpq parameters such "
        "as ?host=/run/postgresql for a unix socket). Never put a password here: see "
        "password_env.",
    )
    table: str | None = Field(
        None, description="Table (or schema.table) to read whole. Give table or query.",
    )
    query: str | None = Field(None, description="SELECT statement to read. Give table or query.")
    password_env: str | None = Field(
        None, description="Environment variable holding the database password, read where "
        "each connection is made: set it on the driver and on every Ray node that reads.",
    )
    shard_key: str | None = Field(
        None, description="Column that splits the read into parallel tasks; an integer column "
        "(e.g. the primary key) works everywhere. Default: one read task.",
    )
    shard_hash_fn: str | None = Field(
        None, description="SQL function applied to shard_key before the modulo, for keys that "
        "are not integers (PostgreSQL: hashtext). Default: the key itself.",
    )
    parallelism: int | None = Field(
        None, ge=2, description="Read tasks with a shard_key (each scans the query once, "
        "server-side). Default: the cluster's CPUs, at least 2.",
    )

    @field_validator("password_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        return _check_env_name(v)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].split("+", 1)[0].lower() if "://" in v else ""
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        # libpq also reads ?password=...: as much a secret in the YAML as user:password@.
        if scheme != "sqlite" and (re.match(r"^[^:]+://[^/@]*:[^/@]*@", v)
                                   or re.search(r"[?&]password=", v, re.IGNORECASE)):
            raise ValueError("holds a password; put it in an environment variable and name it "
                             "in password_env")
        return v

    @model_validator(mode="after")
    def _check_what(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table and query")
        if self.table is not None and not _IDENTIFIER.match(self.table):
            raise ValueError(f"table {self.table!r} is not a plain [schema.]table name; use "
                             "query for anything else")
        for name in ("shard_key", "shard_hash_fn"):
            value = getattr(self, name)
            if value is not None and not _IDENTIFIER.match(value):
                raise ValueError(f"{name} {value!r} is not a plain column or function name")
        if self.shard_hash_fn is not None and self.shard_key is None:
            raise ValueError("shard_hash_fn needs shard_key")
        if self.parallelism is not None and self.shard_key is None:
            raise ValueError("parallelism needs shard_key: without one the read is one task")
        return self


class HttpSource(SourceConfig):
    """A paginated JSON API, read by a Ray Data datasource.

    Pagination styles: ``page`` (``?page=1&per_page=100``), ``offset``
    (``?offset=0&limit=100``), ``cursor`` (the response names the next cursor or next URL)
    and ``none`` (one request). Page and offset reads run as parallel tasks when the response
    states the total (``total_path``); otherwise pages are fetched in order until a short or
    empty page. Cursor reads are one task, since each page names the next.
    """

    kind: Literal["http"] = "http"
    url: str = Field(description="Endpoint URL (http:// or https://), without pagination "
                     "parameters.")
    pagination: Literal["page", "offset", "cursor", "none"] = "page"
    records_path: str = Field(
        "", description="Dotted path to the list of records in each JSON response, e.g. "
        "data.items; empty: the response is the list.",
    )
    params: dict[str, str] = Field(default_factory=dict,
                                   description="Query parameters sent with every request.")
    headers: dict[str, str] = Field(default_factory=dict,
                                    description="HTTP headers sent with every request (no secrets: "
                                    "see headers_env).")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="Headers whose values are secrets (an API key): "
        "header name -> environment variable holding the value, read on the driver when the "
        "run starts; never logged.",
    )
    params_env: dict[str, str] = Field(
        default_factory=dict, description="As headers_env, for query parameters sent with "
        "every request (e.g. api_key: CUSTOMER_API_KEY); never logged or shown in errors.",
    )
    token_env: str | None = Field(
        None, description="Environment variable holding a token sent as "
        "`Authorization: Bearer <token>` (read on the driver when the run starts).",
    )
    page_size: int = Field(100, ge=1, description="Records asked for per request.")
    page_param: str = Field("page", description="page: query parameter of the page number.")
    first_page: int = Field(1, ge=0, description="page: number of the first page.")
    size_param: str = Field(
        "per_page", description="page/offset: query parameter of the page size (offset style "
        "usually calls it limit).",
    )
    offset_param: str = Field("offset", description="offset: query parameter of the offset.")
    total_path: str | None = Field(
        None, description="page/offset: dotted path to the total number of records in a "
        "response; when given, pages are fetched by parallel tasks.",
    )
    cursor_param: str = Field("cursor", description="cursor: query parameter of the cursor.")
    next_cursor_path: str = Field(
        "next_cursor", description="cursor: dotted path to the next cursor (or to the full "
        "next URL) in a response; missing, null or empty ends the read. A next URL is "
        "followed only on the url's own scheme, host and port (or a next_url_hosts host): "
        "it is sent the token.",
    )
    next_url_hosts: list[str] = Field(
        default_factory=list, description="cursor: other hosts (`host`, or `host:port` for a "
        "port other than the scheme's default) whose next URLs are followed, over the url's "
        "scheme; they are sent the token too. Next URLs anywhere else are refused.",
    )
    max_pages: int | None = Field(
        10_000, ge=1, description="Most pages one read may take. An API with more fails the "
        "read naming this field, rather than passing part of its data off as all of it; with "
        "total_path, a total that implies more pages is refused before any page task is "
        "planned. null: no limit (a runaway cursor chain or total is then fetched to the end).",
    )
    max_response_bytes: int = Field(
        64 * 2**20, ge=1, description="Largest response body accepted, in bytes after "
        "decompression; a larger one fails the read naming this field. Checked against "
        "Content-Length before reading and counted while streaming, so an oversized or "
        "endless body is never held whole in memory.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Per-request connect and read timeout.")
    max_retries: int = Field(
        5, ge=0, description="Retries of a request that failed with 429, 5xx, a timeout or a "
        "connection error; other 4xx answers fail at once.",
    )
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    backoff_max_s: float = Field(30.0, ge=0, description="Longest retry delay (also caps "
                                 "Retry-After).")
    rate_limit: float | None = Field(
        None, gt=0, description="Most requests per second, over all read tasks together.",
    )
    parallelism: int | None = Field(
        None, ge=1, description="page/offset with total_path: read tasks. Default: the "
        "cluster's CPUs, never more than the pages.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("token_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        return _check_env_name(v)

    @field_validator("headers_env", "params_env")
    @classmethod
    def _envs(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v.values():
            _check_env_name(name)
        return v

    @field_validator("next_url_hosts")
    @classmethod
    def _check_hosts(cls, v: list[str]) -> list[str]:
        bad = [h for h in v if not _HOST_PORT.match(h)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a host name: give e.g. api-eu.example.com or "
                             "api-eu.example.com:8443, without scheme or path")
        return [h.lower() for h in v]

    @model_validator(mode="after")
    def _check_style(self) -> HttpSource:
        if self.total_path is not None and self.pagination not in ("page", "offset"):
            raise ValueError("total_path only applies to page or offset pagination")
        if self.next_url_hosts and self.pagination != "cursor":
            raise ValueError("next_url_hosts only applies to cursor pagination")
        if self.parallelism is not None and self.total_path is None:
            raise ValueError("parallelism needs total_path: without a known total, pages are "
                             "fetched one after another")
        for given, secret in (("headers", "headers_env"), ("params", "params_env")):
            both = sorted(set(getattr(self, given)) & set(getattr(self, secret)))
            if both:
                raise ValueError(f"{both[0]!r} is in both {given} and {secret}; keep it in one")
        return self


_BuiltinSource = DemoSource | FileSource | SqlSource | HttpSource
_BUILTIN = TypeAdapter(Annotated[_BuiltinSource, Field(discriminator="kind")])

BUILTIN_SOURCE_KINDS: tuple[str, ...] = tuple(
    get_args(cls.model_fields["kind"].annotation)[0] for cls in get_args(_BuiltinSource))
"""The kinds raypipe ships, in the union's order (their readers: ``pipelines.sources``)."""

_PLUGINS: dict[str, type[SourceConfig]] = {}


def register_source_config(kind: str, config_type: type[SourceConfig], *,
                           replace: bool = False) -> None:
    """Validate ``source.kind: <kind>`` with ``config_type`` from now on.

    Called by :func:`pipelines.sources.register_source`; a kind already registered with
    another model is refused unless ``replace`` (so two plugins cannot silently fight over
    one name). A built-in kind may be replaced only with ``replace``.
    """
    if not (isinstance(config_type, type) and issubclass(config_type, SourceConfig)):
        raise ConfigError(f"source kind {kind!r}: config_type must subclass SourceConfig, "
                          f"got {config_type!r}")
    default = config_type.model_fields["kind"].default
    if default != kind:
        raise ConfigError(f"source kind {kind!r}: {config_type.__name__}.kind must default to "
                          f"{kind!r} (it defaults to {default!r})")
    current = _PLUGINS.get(kind)
    if current is not config_type and not replace and (
            current is not None or kind in BUILTIN_SOURCE_KINDS):
        holder = f"by {current.__qualname__}" if current is not None else "built in"
        raise ConfigError(f"source kind {kind!r} is already registered ({holder}); pass "
                          "replace=True to replace it")
    _PLUGINS[kind] = config_type


def source_config_type(kind: str) -> type[SourceConfig] | None:
    """The registered plugin model of ``kind``; an installed ``raypipe.sources`` entry point
    of that name is loaded first when none is. None for built-in and unknown kinds."""
    if kind not in _PLUGINS and kind not in BUILTIN_SOURCE_KINDS:
        if kind in BUILTIN_MODULE_KINDS:
            reader = import_ref(BUILTIN_MODULE_KINDS[kind])
        else:
            reader = load_entry_point(SOURCE_ENTRY_POINTS, kind)  # importing it may register it
        config_type = getattr(reader, "config_type", None)
        if kind not in _PLUGINS and config_type is not None:
            register_source_config(kind, config_type)
    return _PLUGINS.get(kind)


def source_kinds() -> tuple[str, ...]:
    """Every kind ``source.kind`` accepts: built-in, registered, and installed entry points."""
    plugins = set(_PLUGINS) | set(entry_point_names(SOURCE_ENTRY_POINTS))
    builtin = BUILTIN_SOURCE_KINDS + tuple(BUILTIN_MODULE_KINDS)
    return builtin + tuple(sorted(plugins - set(builtin)))


def _kind_error(kind: str, message: str) -> ValidationError:
    # Placed at the tag the user wrote, as pydantic places the union's own tag errors.
    error = PydanticCustomError("source_kind", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "Source", [InitErrorDetails(type=error, loc=("kind",), input=kind)])


def _validate_source(value: Any) -> SourceConfig:
    kind = value.get("kind") if isinstance(value, Mapping) else getattr(value, "kind", None)
    if isinstance(kind, str):
        try:
            plugin = source_config_type(kind)
        except PluginError as err:
            raise _kind_error(kind, str(err)) from None
        if plugin is not None:
            return value if isinstance(value, plugin) else plugin.model_validate(value)
        if kind not in BUILTIN_SOURCE_KINDS:
            raise _kind_error(kind, f"unknown source kind {kind!r}; choose from "
                              f"{', '.join(source_kinds())}")
    # Built-in kinds (and a missing or mistyped tag) get the union's own errors and locations.
    result: SourceConfig = _BUILTIN.validate_python(value)
    return result


Source = Annotated[SourceConfig, PlainValidator(_validate_source), SerializeAsAny()]
"""The type of ``source`` and ``batch.input``: a built-in kind or a registered plugin kind.

Serialised as the actual model, so that a plugin's fields survive ``model_dump``."""

AnySource = SourceConfig
"""A source of any kind, for type hints (``Source`` is the annotated type pydantic parses)."""
