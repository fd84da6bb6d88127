"""The pipeline configuration: one frozen pydantic model, the single source of settings.

Every section is optional except ``name``, ``source`` and ``target``; defaults are chosen so
that a file with only those keys runs end to end. Validation happens here, before Ray starts,
and every error names the offending field (see :func:`load_config`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AnySource",
    "BatchConfig",
    "BinFeature",
    "CleanConfig",
    "ColumnContract",
    "ColumnImpute",
    "ConfigError",
    "DemoSource",
    "DerivedFeature",
    "EvaluateConfig",
    "FeaturesConfig",
    "FileSource",
    "HttpSource",
    "MonitorConfig",
    "PipelineConfig",
    "ProfileConfig",
    "RequestLogConfig",
    "RetrainConfig",
    "RuntimeConfig",
    "SchemaConfig",
    "SelectionConfig",
    "ServeConfig",
    "SplitConfig",
    "SqlSource",
    "TrackingConfig",
    "TrainConfig",
    "demo_config_path",
    "load_config",
]

Task = Literal["binary", "multiclass", "regression"]


class _Section(BaseModel):
    """Base for every config section: immutable and strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message names the field."""


# --------------------------------------------------------------------------- source


class DemoSource(_Section):
    """The bundled, generated demo data set (a customer-churn-like binary problem)."""

    kind: Literal["demo"] = "demo"
    rows: int = Field(50_000, ge=100, description="Number of rows to generate.")
    seed: int = Field(7, description="Seed of the generator; the same seed gives the same data.")


class FileSource(_Section):
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


def _check_env_name(v: str | None) -> str | None:
    if v is not None and not _ENV_NAME.match(v):
        raise ValueError(f"{v!r} is not an environment variable name; give the variable's name, "
                         "not its value (secrets never go in the YAML)")
    return v


class SqlSource(_Section):
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
        None, description="Environment variable holding the database password (read on the "
        "driver when the run starts).",
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
        if scheme != "sqlite" and re.match(r"^[^:]+://[^/@]*:[^/@]*@", v):
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


class HttpSource(_Section):
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
                                    description="HTTP headers sent with every request (no secrets).")
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
        "next URL) in a response; missing, null or empty ends the read.",
    )
    max_pages: int | None = Field(None, ge=1, description="Stop after this many pages.")
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

    @model_validator(mode="after")
    def _check_style(self) -> HttpSource:
        if self.total_path is not None and self.pagination not in ("page", "offset"):
            raise ValueError("total_path only applies to page or offset pagination")
        if self.parallelism is not None and self.total_path is None:
            raise ValueError("parallelism needs total_path: without a known total, pages are "
                             "fetched one after another")
        return self


Source = Annotated[DemoSource | FileSource | SqlSource | HttpSource, Field(discriminator="kind")]
AnySource = DemoSource | FileSource | SqlSource | HttpSource
"""A source of any kind, for type hints (``Source`` is the annotated union pydantic parses)."""


# --------------------------------------------------------------------------- contract


class ColumnContract(_Section):
    """What one column must look like; rows that break it are quarantined with the reason."""

    type: Literal["int", "float", "string", "bool", "datetime"]
    nullable: bool = True
    min: float | None = Field(None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(None, description="Largest allowed value (numeric columns).")
    allowed: list[str] | None = Field(
        None,
        description="Allowed values (string columns), compared after trimming and lower-casing "
        "so that spelling variants are left to the cleaning stage rather than quarantined.",
    )
    regex: str | None = Field(
        None,
        description="Regular expression (Python syntax) every non-null value must match in "
        "full, e.g. '[A-Z]{2}\\d{4}' (string columns).",
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnContract:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max only apply to int or float columns, not {self.type}")
        if self.allowed is not None and self.type != "string":
            raise ValueError("allowed only applies to string columns")
        if self.regex is not None:
            if self.type != "string":
                raise ValueError("regex only applies to string columns")
            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"regex {self.regex!r} does not compile: {err}") from None
        return self


class ProfileConfig(_Section):
    """The data profile and quality report, and how ``raypipe profile`` infers a contract."""

    enabled: bool = Field(
        True, description="Profile the input and the rows that passed; write the quality report "
        "(JSON + HTML) and keep the training profile with the model for drift monitoring.",
    )
    top_values: int = Field(10, ge=1, le=1000, description="Most frequent values shown per column.")
    high_null_fraction: float = Field(
        0.5, ge=0, le=1, description="Report a column whose share of missing values is above this.",
    )
    range_margin: float = Field(
        0.1, ge=0, description="raypipe profile: widen the observed [min, max] by this share of "
        "the range on each side (never below 0 for a column without negative values).",
    )
    max_allowed_values: int = Field(
        20, ge=1, description="raypipe profile: a string column with at most this many distinct "
        "values gets an `allowed` list.",
    )


class SchemaConfig(_Section):
    """The data contract. Columns not listed here pass through unchecked."""

    columns: dict[str, ColumnContract] = Field(default_factory=dict)
    unique_key: list[str] = Field(
        default_factory=list,
        description="Column(s) whose values together identify a row. Rows repeating a key "
        "already seen are quarantined (the first valid row of each key is kept); rows with a "
        "missing key part are not checked, as in SQL.",
    )
    max_quarantine_fraction: float = Field(
        0.2, ge=0, le=1, description="Fail the run when more than this share of rows is quarantined."
    )
    profile: ProfileConfig = Field(default_factory=ProfileConfig)

    @field_validator("unique_key", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("unique_key")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"unique_key repeats a column: {v}")
        return v


# --------------------------------------------------------------------------- cleaning / features


NumericImpute = Literal["median", "mean", "most_frequent", "constant", "drop_row"]
CategoricalImpute = Literal["most_frequent", "constant", "drop_row"]


class ColumnImpute(_Section):
    """How one column's missing values are filled (overrides the per-type default)."""

    strategy: Literal["median", "mean", "most_frequent", "constant", "drop_row"]
    value: float | str | None = Field(
        None, description="constant: the fill value (a number for numeric columns, text for "
        "categorical ones). Default: fill_value_numeric / fill_value_categorical.",
    )

    @model_validator(mode="after")
    def _check_value(self) -> ColumnImpute:
        if self.value is not None and self.strategy != "constant":
            raise ValueError(f"value only applies to strategy 'constant', not {self.strategy!r}")
        return self


class CleanConfig(_Section):
    """Row and value cleaning; every statistic is fitted on the training split only.

    ``drop_row`` drops training rows with a missing value in that column; rows met at
    inference (valid/test splits, batch, online) are never dropped: they are filled with the
    column's median (numeric) or most frequent value (categorical) of the training split, so
    every row still gets a prediction.
    """

    impute_numeric: NumericImpute = Field(
        "median", description="Default for numeric columns: median | mean | most_frequent | "
        "constant | drop_row (training rows only; see the class doc).",
    )
    impute_categorical: CategoricalImpute = Field(
        "most_frequent", description="Default for categorical columns: most_frequent | constant "
        "| drop_row.",
    )
    impute_columns: dict[str, ColumnImpute] = Field(
        default_factory=dict, description="Per-column strategies that override the type default.",
    )
    fill_value_numeric: float = 0.0
    fill_value_categorical: str = "__missing__"
    missing_indicators: bool | list[str] = Field(
        False, description="Add a 0/1 column `<name>_missing` per column: true for every "
        "numeric or categorical column that had a missing value in the training split, or a "
        "list of columns.",
    )
    outliers: Literal["iqr", "zscore", "none"] = Field(
        "iqr", description="Outlier bounds fitted on train: iqr [q1 - k*IQR, q3 + k*IQR] "
        "(k = iqr_factor) or zscore [mean - z*std, mean + z*std] (z = zscore_threshold).",
    )
    iqr_factor: float = Field(3.0, gt=0, description="k of the IQR bounds.")
    zscore_threshold: float = Field(4.0, gt=0, description="z of the z-score bounds.")
    outlier_action: Literal["clip", "quarantine"] = Field(
        "clip", description="clip: values outside the bounds are clipped to them. quarantine: "
        "training rows outside the bounds go to the quarantine data set with the column and "
        "reason (counted); at inference values are still clipped, so every row is answered.",
    )
    outlier_columns: list[str] | None = Field(
        None, description="Numeric columns that get outlier bounds. Default: all of them.",
    )
    normalize_categories: bool = Field(True, description="Trim and lower-case category values.")
    synonyms: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Per categorical column, a mapping of spelling "
        "variants to the canonical value, applied after trimming / lower-casing "
        "(e.g. {country: {uk: gb, united kingdom: gb}}).",
    )
    coerce: dict[str, Literal["float", "string", "bool", "datetime"]] = Field(
        default_factory=dict, description="Force a column's type instead of the one read from "
        "the data: numbers stored as text become float (unparseable values become missing), "
        "numeric codes become categories (string), text dates become datetime.",
    )
    dedupe: bool = Field(True, description="Drop duplicate rows from the training split.")
    dedupe_key: list[str] | None = Field(
        None, description="Rows with equal values in these columns are duplicates (one is kept, "
        "the same one whatever the block order). Default: all columns.",
    )

    @model_validator(mode="after")
    def _check_strategies(self) -> CleanConfig:
        overlap = set(self.synonyms) & {c for c, k in self.coerce.items() if k != "string"}
        if overlap:
            raise ValueError(f"synonyms apply to categorical columns, but coerce makes "
                             f"{sorted(overlap)} non-categorical")
        return self


class RatioFeature(_Section):
    """A derived column ``name = numerator / denominator`` (0 denominators give missing)."""

    name: str
    numerator: str
    denominator: str


class DerivedFeature(_Section):
    """A derived column computed from a safe expression over numeric columns.

    The expression language: numbers, column names, ``+ - * / // % **``, comparisons
    (1.0 / 0.0), ``and or not``, ``x if cond else y`` and the functions ``abs log log1p exp
    sqrt floor ceil round min max clip where isnan``. Columns are the cleaned (imputed,
    clipped) numeric and boolean columns, other features (ratios, datetime parts, ordinal
    codes) and earlier derived features; a division by zero gives a missing value. Anything else (an
    attribute, a subscript, a call of another name) is refused with an error naming the
    feature; nothing is ever passed to ``eval``.
    """

    name: str = Field(min_length=1)
    expr: str = Field(min_length=1)


class BinFeature(_Section):
    """A binned copy ``<column>_bin`` of a numeric column: the bin index 0..n-1."""

    column: str
    method: Literal["quantile", "fixed"] = Field(
        "quantile", description="quantile: n_bins bins of equal training counts; fixed: edges.",
    )
    n_bins: int = Field(4, ge=2, le=1000)
    edges: list[float] | None = Field(
        None, description="fixed: the inner bin edges, ascending (k edges give k+1 bins).",
    )

    @model_validator(mode="after")
    def _check_edges(self) -> BinFeature:
        if self.method == "fixed":
            if not self.edges:
                raise ValueError("method 'fixed' needs edges")
            if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError("edges must be strictly ascending")
        elif self.edges is not None:
            raise ValueError("edges only apply to method 'fixed'")
        return self


class SelectionConfig(_Section):
    """Feature selection, fitted on the training split and frozen into the pipeline."""

    method: Literal["none", "variance", "correlation", "importance"] = Field(
        "none", description="variance: drop features whose training variance is at most "
        "variance_threshold; correlation: of each pair with |r| above correlation_threshold "
        "drop the later one; importance: keep the top_k features by XGBoost gain on a sample "
        "of the training split.",
    )
    variance_threshold: float = Field(0.0, ge=0)
    correlation_threshold: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(20, ge=1)
    sample_rows: int = Field(
        100_000, ge=100, description="importance: training rows the ranking model is fitted on.",
    )


DatetimePart = Literal["year", "quarter", "month", "day", "dayofweek", "dayofyear", "hour",
                       "minute", "is_weekend"]
Encoding = Literal["ordinal", "onehot", "hashed"]


def _default_datetime_parts() -> list[DatetimePart]:
    return ["month", "dayofweek", "hour"]


class FeaturesConfig(_Section):
    """Feature engineering applied after cleaning."""

    categorical_encoding: Encoding = Field(
        "ordinal", description="ordinal: one code per category; onehot: one 0/1 column per "
        "category (+ one for others); hashed: one 0/1 column per hash bucket (no vocabulary, "
        "for high cardinality).",
    )
    encoding_columns: dict[str, Encoding] = Field(
        default_factory=dict, description="Per-column encodings that override the default.",
    )
    max_categories: int = Field(
        50, ge=1, description="Keep the most frequent categories; rarer ones share one code."
    )
    hash_buckets: int = Field(16, ge=2, le=4096, description="hashed: buckets per column.")
    datetime_parts: list[DatetimePart] = Field(default_factory=_default_datetime_parts)
    ratios: list[RatioFeature] = Field(default_factory=list)
    derived: list[DerivedFeature] = Field(
        default_factory=list, description="Columns computed from safe expressions, in order.",
    )
    bins: list[BinFeature] = Field(default_factory=list)
    scaling: Literal["none", "standard", "minmax"] = Field(
        "none", description="Scale every feature with training statistics (standard: "
        "(x - mean) / std; minmax: into [0, 1]). The mlp and linear families standardise "
        "inside the model when this is none, and skip their own scaling when it is set.",
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    drop: list[str] = Field(default_factory=list, description="Columns never used as features.")

    @model_validator(mode="after")
    def _check_names(self) -> FeaturesConfig:
        names = [r.name for r in self.ratios] + [d.name for d in self.derived]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"feature name(s) used twice: {', '.join(twice)}")
        return self


class SplitConfig(_Section):
    """How rows are divided into train / valid / test."""

    strategy: Literal["stratified", "random", "time"] = "stratified"
    time_column: str | None = Field(
        None, description="time: order rows by this column; train holds the oldest, test the "
        "newest, so no training row is later than any validation or test row.",
    )
    train: float = Field(0.7, gt=0, lt=1)
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _check_sum(self) -> SplitConfig:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + valid + test must be 1.0, got {total:.4f}")
        if self.strategy == "time" and not self.time_column:
            raise ValueError("strategy 'time' needs time_column")
        return self


# --------------------------------------------------------------------------- training


class Uniform(_Section):
    type: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self) -> Uniform:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class LogUniform(_Section):
    type: Literal["loguniform"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> LogUniform:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class RandInt(_Section):
    type: Literal["randint"]
    low: int
    high: int = Field(description="Exclusive upper bound.")

    @model_validator(mode="after")
    def _check(self) -> RandInt:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class Choice(_Section):
    type: Literal["choice"]
    values: list[float | int | str | bool] = Field(min_length=1)


SearchDim = Annotated[Uniform | LogUniform | RandInt | Choice, Field(discriminator="type")]

def _space(**dims: dict[str, Any]) -> dict[str, Any]:
    return dict(dims)


class _FamilySettings(_Section):
    @field_validator("search_space", mode="before", check_fields=False)
    @classmethod
    def _empty_space(cls, v: Any) -> Any:
        return {} if v is None else v


class XGBoostSettings(_FamilySettings):
    """XGBoost family: fixed parameters, search space and boosting rounds."""

    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Fixed XGBoost parameters applied to every trial.",
    )
    search_space: dict[str, SearchDim] = Field(
        default_factory=lambda: _space(
            eta={"type": "loguniform", "low": 0.03, "high": 0.3},
            max_depth={"type": "randint", "low": 3, "high": 8},
            subsample={"type": "uniform", "low": 0.7, "high": 1.0},
            min_child_weight={"type": "choice", "values": [1, 5]},
        ),
        validate_default=True,
    )
    num_boost_round: int = Field(200, ge=1)
    early_stopping_rounds: int = Field(20, ge=1)
    checkpoint_every: int = Field(
        50, ge=1, description="Data-parallel trials: rank 0 checkpoints the booster every this "
        "many rounds, so a worker group restarted after a failure (train.max_failures) "
        "continues from the last checkpoint instead of from round 0.",
    )


class MLPSettings(_FamilySettings):
    """PyTorch MLP family (needs the ``torch`` extra): architecture, optimiser, stopping."""

    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    search_space: dict[str, SearchDim] = Field(
        default_factory=lambda: _space(
            lr={"type": "loguniform", "low": 1e-3, "high": 1e-2},
            hidden_size={"type": "choice", "values": [32, 64, 128]},
            dropout={"type": "uniform", "low": 0.0, "high": 0.3},
        ),
        validate_default=True,
    )
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1, description="Epochs without a better validation loss.")
    batch_size: int = Field(512, ge=1)
    num_layers: int = Field(2, ge=1)
    checkpoint_every: int = Field(
        5, ge=1, description="Data-parallel trials: rank 0 checkpoints the training state "
        "(weights, optimiser, early-stopping counters) every this many epochs, so a worker "
        "group restarted after a failure (train.max_failures) continues from the last "
        "checkpoint instead of from epoch 0.",
    )


class LinearSettings(_FamilySettings):
    """Linear baseline: logistic regression (classification) or ridge (regression)."""

    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    search_space: dict[str, SearchDim] = Field(
        default_factory=lambda: _space(C={"type": "loguniform", "low": 0.01, "high": 10.0}),
        validate_default=True,
        description="C is the inverse regularisation strength (ridge alpha = 1/C).",
    )


Family = Literal["xgboost", "mlp", "linear"]


def _default_families() -> list[Family]:
    return ["xgboost"]


Metric = Literal["logloss", "auc", "accuracy", "rmse", "mae"]


class TrainConfig(_Section):
    """Model families, search spaces, the Tune sweep and how trials are scaled."""

    families: list[Family] = Field(
        default_factory=_default_families, min_length=1,
        description="Families the sweep compares; num_samples trials each.",
    )
    xgboost: XGBoostSettings = Field(default_factory=XGBoostSettings)
    mlp: MLPSettings = Field(default_factory=MLPSettings)
    linear: LinearSettings = Field(default_factory=LinearSettings)
    num_samples: int = Field(4, ge=1, description="Tune trials per family.")
    metric: Metric | None = Field(
        None, description="Validation metric that ranks trials (and families). "
        "Default: logloss (classification), rmse (regression).",
    )
    scheduler: Literal["fifo", "asha"] = Field(
        "fifo", description="asha stops bad trials early from their per-round reports.",
    )
    grace_period: int = Field(
        2, ge=1, description="ASHA: reports (every 10 rounds or 1 epoch) before a trial may stop.",
    )
    num_workers: int = Field(
        1, ge=1, description="Ray Train workers per trial. 1 trains in-process inside the Tune "
        "trial (no Ray Train start-up); >1 runs a data-parallel Ray Train run per trial "
        "(XGBoostTrainer or TorchTrainer; the linear family always trains in-process).",
    )
    parallelism: Literal["auto", "in_process", "data_parallel"] = Field(
        "auto", description="auto: data_parallel when num_workers > 1, else in_process.",
    )
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool = False
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Default: as many as the cluster's CPUs allow.",
    )
    max_failures: int = Field(1, ge=0, description="Retries of a failed trial or Train run.")
    refit: bool = Field(
        True, description="Refit the winning configuration on train + valid, for the rounds / "
        "epochs early stopping chose (in-process sweeps only). The validation score reported "
        "stays the sweep's.",
    )
    cv_folds: int = Field(
        5, ge=1, description="Small data sets: each in-process trial is scored by k-fold "
        "cross-validation over train + valid (stratified for classification) and the winner "
        "refitted on train + valid, since a validation split of a few hundred rows ranks trials "
        "mostly by noise. Needs refit; never used with the time split (folds would train on "
        "the future). 1 turns it off.",
    )
    cv_max_rows: int = Field(
        20_000, ge=0, description="Cross-validate only while train + valid hold at most this "
        "many rows; above it, the validation split alone ranks trials.",
    )
    seed: int = 0

    @field_validator("families")
    @classmethod
    def _unique_families(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists a family twice")
        return v


# --------------------------------------------------------------------------- evaluate / outputs


class GateConfig(_Section):
    """When a new model may replace the current champion."""

    metric: str | None = Field(
        None, description="Test metric compared with the champion's on the same test rows. "
        "Default: roc_auc (binary), f1_macro (multiclass), rmse (regression).",
    )
    margin: float = Field(
        0.0, ge=0, description="The new model must beat the champion by at least this much.",
    )
    slice_floor: float | None = Field(
        None, description="No slice's gate metric may fall below this (lower-is-better metrics: "
        "rise above it).",
    )


class ChecksConfig(_Section):
    """Pre-production checks of model outputs, run before promotion."""

    sample_rows: int = Field(200, ge=1, description="Test rows the checks predict on.")
    latency_budget_ms: float = Field(
        100.0, gt=0, description="Budget for one single-row prediction (median of repeats).",
    )


class EvaluateConfig(_Section):
    """Test-set evaluation, plots, pre-production checks and the champion gate."""

    threshold: float = Field(0.5, gt=0, lt=1, description="Decision threshold (binary).")
    slices: list[str] = Field(
        default_factory=list, description="Raw columns to report per-value (slice) metrics on.",
    )
    plots: bool = Field(True, description="Save ROC/PR/confusion/calibration/residual plots.")
    gate: GateConfig = Field(default_factory=GateConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)


class BatchConfig(_Section):
    """Batch inference (`raypipe predict`, the pipeline's batch stage) with a Ray Data actor pool.

    Every input row ends up either in the predictions or in the quarantine folder with a
    reason; the counts are checked to add up.
    """

    input: Source | None = Field(
        None, description="Raw rows `raypipe predict --config` scores when --input is not given; "
        "any source kind the ingest stage reads.",
    )
    output_dir: str | None = Field(
        None, description="Where predictions go. Default: <work_dir>/outputs/<name>."
    )
    batch_size: int = Field(
        65_536, ge=1, description="Rows per model call; larger amortises the per-call overhead."
    )
    concurrency: int = Field(
        2, ge=1, description="Predictor actors; each loads the model once and keeps it."
    )
    num_cpus_per_actor: float = Field(
        0.25, gt=0, description="Fractional so read tasks keep CPUs on small machines: a pool "
        "whose actors take every CPU starves the reads and hangs.",
    )
    id_columns: list[str] | None = Field(
        None, description="Input columns copied next to the predictions (ids, keys). "
        "Default: every input column.",
    )
    partition_cols: list[str] = Field(
        default_factory=list,
        description="Hive-partition the Parquet output by these output columns.",
    )
    min_rows_per_file: int | None = Field(
        1_000_000, ge=1, description="Output blocks are combined into Parquet files of at least "
        "this many rows (the last may hold fewer): one write task per file instead of one per "
        "batch, 1.5 s of 15 s on 5M rows here. Ignored with partition_cols. null: one file per "
        "batch.",
    )
    model_version_column: str = Field(
        "model_version", min_length=1,
        description="Output column naming the registered model version that scored the row.",
    )
    quarantine_dir: str | None = Field(
        None, description="Where rows the model cannot score go, with the reason in "
        "`_quarantine_reason`. Default: <output>/_quarantine (ignored by Parquet readers).",
    )
    max_object_store_bytes: int | None = Field(
        None, ge=1, description="Cap on the object store memory the streaming run may use "
        "(Ray Data resource limit); default: Ray Data's own budget.",
    )

    @model_validator(mode="after")
    def _check_partitions(self) -> BatchConfig:
        if self.id_columns is not None and self.partition_cols:
            kept = set(self.id_columns) | {self.model_version_column}
            extra = [c for c in self.partition_cols if c not in kept]
            if extra:
                raise ValueError(f"partition_cols {extra} are not output columns; add them to "
                                 "id_columns")
        return self


class ServeConfig(_Section):
    """Online inference with Ray Serve: /predict, /invocations (MLflow) and /v2 (KServe)."""

    host: str = Field("127.0.0.1", description="Bind address of the HTTP proxy.")
    port: int = Field(8000, ge=1, le=65535)
    num_replicas: int = Field(
        1, ge=1, description="Replicas; with autoscaling, the number started with."
    )
    autoscaling: bool = Field(
        False, description="Scale replicas between min_replicas and max_replicas on load."
    )
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(
        32, gt=0, description="Autoscaling aims at this many requests in flight per replica."
    )
    num_cpus_per_replica: float = Field(
        0.5, gt=0, description="Fractional, so batch jobs on the same small cluster still run."
    )
    max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one replica works on at once (its batching window)."
    )
    max_queued_requests: int = Field(
        256, ge=-1, description="Requests waiting for a free replica slot; more are answered "
        "503 at once instead of piling up. -1: no limit.",
    )
    overload_retry_after_s: float | None = Field(
        1.0, ge=0, description="Retry-After header on 503 overload answers (None: no header)."
    )
    max_batch_size: int = Field(
        256, ge=1, description="Most rows one model call combines across requests "
        "(@serve.batch); a request with more rows runs on its own.",
    )
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="How long a batch waits for more requests. 0: take what is "
        "queued; requests still batch up while the model is busy, with no idle wait.",
    )
    max_request_rows: int = Field(10_000, ge=1, description="Larger requests get HTTP 413.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="A request still unanswered after this long (reading its body, "
        "waiting for and running the model) gets HTTP 504, so no client waits without bound.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Larger bodies get HTTP 413."
    )
    model_poll_interval_s: float = Field(
        10.0, ge=0, description="How often replicas check where the registry alias points and "
        "load a new version without dropping requests (hot swap). 0: never.",
    )
    model_retry_interval_s: float = Field(
        5.0, gt=0, description="While the model store cannot be reached at start, how often a "
        "replica retries the first load (it reports not-ready and answers 503 meanwhile).",
    )
    auth_token_env: str | None = Field(
        None, description="Require `Authorization: Bearer <token>`, the token read from this "
        "environment variable of the replicas. Default: no auth (localhost demos).",
    )
    auth_token_file: str | None = Field(
        None, description="As auth_token_env, the token read from this file (a mounted secret)."
    )
    ingress: Literal["proxy", "haproxy"] = Field(
        "proxy", description="proxy: Serve's Python HTTP proxy. haproxy: HAProxy in front of "
        "replicas that listen themselves (Serve's throughput-optimised mode; set when raypipe "
        "starts the Ray instance, else set RAY_SERVE_ENABLE_HA_PROXY=1 and "
        "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 on the cluster).",
    )

    @model_validator(mode="after")
    def _check_scaling(self) -> ServeConfig:
        if self.autoscaling and not (
            self.min_replicas <= self.num_replicas <= self.max_replicas
        ):
            raise ValueError(
                f"with autoscaling, min_replicas ({self.min_replicas}) <= num_replicas "
                f"({self.num_replicas}) <= max_replicas ({self.max_replicas}) must hold"
            )
        if self.auth_token_env and self.auth_token_file:
            raise ValueError("set one of auth_token_env and auth_token_file, not both")
        return self


class RequestLogConfig(_Section):
    """Request logging of the Serve app: a sample of requests and predictions, to Parquet.

    Records are queued in the replica and written by a background thread in batches, so a
    request never waits for storage; when the queue is full, records are dropped (counted in
    ``raypipe_request_log_dropped_total``), never the request.
    """

    enabled: bool = Field(True, description="Log a sample of served requests.")
    path: str | None = Field(
        None, description="Folder (local path or any pyarrow file system URI, e.g. s3://...) "
        "the Parquet files go to. Default: <work_dir>/request_logs/<name>.",
    )
    sample_rate: float = Field(
        1.0, ge=0, le=1, description="Share of requests logged (whole requests, chosen at "
        "random); 0 logs nothing.",
    )
    flush_rows: int = Field(
        5_000, ge=1, description="Write a Parquet file once this many rows are queued.",
    )
    flush_interval_s: float = Field(
        10.0, gt=0, description="... or once the oldest queued row is this old.",
    )
    max_queue_rows: int = Field(
        100_000, ge=1, description="Rows waiting to be written; beyond this, records are "
        "dropped and counted, so a slow store never slows requests or fills memory.",
    )


class RetrainConfig(_Section):
    """Retraining trigger: when monitoring flags drift or a quality drop, submit the pipeline."""

    enabled: bool = Field(False, description="Submit a training run when a threshold is crossed.")
    address: str | None = Field(
        None, description="Ray job API (dashboard) address, e.g. http://raypipe-head-svc:8265. "
        "Default: $RAY_ADDRESS, else the local cluster's.",
    )
    working_dir: str = Field(
        ".", description="Uploaded as the job's working directory; must hold ray_jobs/ and the "
        "pipeline config.",
    )
    overrides: list[str] = Field(
        default_factory=list, description="`section.field=value` overrides of the training run, "
        "e.g. `source.path=s3://bucket/latest/*.parquet` to train on the newer data.",
    )

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if "=" not in o]
        if bad:
            raise ValueError(f"overrides {bad} must look like section.field=value")
        return v


class MonitorConfig(_Section):
    """Request logging, drift and quality monitoring (`raypipe monitor`), retraining trigger.

    A numeric feature drifts when its PSI reaches ``psi_threshold``, or when the
    Kolmogorov-Smirnov test is significant (p < ``p_value``) with a statistic of at least
    ``min_effect``; a categorical feature likewise with the chi-square test and Cramér's V.
    Requiring an effect size as well as a p-value keeps large windows from flagging
    differences too small to matter.
    """

    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    reference_rows: int = Field(
        10_000, ge=100, description="Training rows (seeded sample) stored with the model as "
        "the monitoring reference, with the model's predictions on them.",
    )
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of numeric features (PSI).")
    psi_threshold: float = Field(0.2, gt=0, description="PSI at or above this is drift.")
    p_value: float = Field(
        0.01, gt=0, lt=1, description="Significance level of the KS / chi-square tests.",
    )
    min_effect: float = Field(
        0.1, gt=0, le=1, description="Smallest KS statistic / Cramér's V a significant test "
        "must also reach to count as drift.",
    )
    max_missing_increase: float = Field(
        0.1, ge=0, le=1, description="Flag a feature whose missing-value rate rose by more "
        "than this (absolute) over the reference.",
    )
    max_new_category_rate: float = Field(
        0.05, ge=0, le=1, description="Flag a categorical feature when more than this share "
        "of its values were never seen in training.",
    )
    max_quality_drop: float = Field(
        0.05, ge=0, description="With labels: flag when the live gate metric is worse than "
        "the model's test metric by more than this.",
    )
    min_rows: int = Field(
        100, ge=1, description="A window with fewer rows is reported but flags nothing.",
    )
    columns: list[str] | None = Field(
        None, description="Input columns to monitor. Default: every model input except "
        "datetime columns (timestamps move with time by nature).",
    )
    id_column: str = Field(
        "request_id", min_length=1, description="Key that joins late labels to logged rows.",
    )
    output_dir: str | None = Field(
        None, description="Where reports go. Default: <work_dir>/monitoring/<name>.",
    )
    webhook_url: str | None = Field(
        None, description="POST the JSON summary here when a threshold is crossed.",
    )
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)


class TrackingConfig(_Section):
    """MLflow tracking and registry."""

    uri: str | None = Field(
        None, description="Tracking URI. Default: $MLFLOW_TRACKING_URI, else a SQLite file "
        "under the work dir.",
    )
    experiment: str | None = Field(None, description="Default: the pipeline name.")
    registered_model: str | None = Field(None, description="Default: the pipeline name.")
    alias: str = "champion"


class RuntimeConfig(_Section):
    """Where the pipeline runs and keeps its files."""

    work_dir: str = Field(".raypipe", description="Local state: MLflow store, outputs, results.")
    ray_address: str | None = Field(
        None, description="Ray cluster to join. Default: $RAY_ADDRESS, else a local instance."
    )
    storage_path: str | None = Field(
        None, description="Ray Tune/Train storage. Default: <work_dir>/ray_results."
    )


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class PipelineConfig(_Section):
    """One pipeline, from source to registered model."""

    name: str = Field(description="Pipeline name; also the registered model name.")
    source: Source
    target: str
    task: Task | None = Field(None, description="Inferred from the target when omitted.")
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    clean: CleanConfig = Field(default_factory=CleanConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "must start with a letter or digit and use only letters, digits, '_', '.', '-'"
            )
        return v

    @model_validator(mode="after")
    def _check_columns(self) -> PipelineConfig:
        if self.target in self.features.drop:
            raise ValueError(f"features.drop lists the target column {self.target!r}")
        return self

    # Derived settings live here so every consumer reads the same value.
    @property
    def work_dir(self) -> Path:
        return Path(self.runtime.work_dir)

    @property
    def storage_path(self) -> str:
        return self.runtime.storage_path or str((self.work_dir / "ray_results").resolve())

    @property
    def cache_dir(self) -> Path:
        """The stage cache of this pipeline (see :mod:`pipelines.cache`)."""
        return self.work_dir / "cache" / self.name

    @property
    def output_dir(self) -> Path:
        return Path(self.batch.output_dir or self.work_dir / "outputs" / self.name)

    @property
    def request_log_path(self) -> str:
        return self.monitor.request_log.path or str(
            (self.work_dir / "request_logs" / self.name).resolve())

    @property
    def monitor_dir(self) -> str:
        return self.monitor.output_dir or str((self.work_dir / "monitoring" / self.name).resolve())

    @property
    def tracking_uri(self) -> str:
        if self.tracking.uri:
            return self.tracking.uri
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        return f"sqlite:///{(self.work_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str:
        return (self.work_dir / "mlartifacts").resolve().as_uri()

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def model_name(self) -> str:
        return self.tracking.registered_model or self.name


# --------------------------------------------------------------------------- loading


def demo_config_path() -> Path:
    """Path of the bundled demo config, which documents every field."""
    return Path(str(resources.files("pipelines") / "configs" / "demo.yaml"))


_SOURCE_KINDS = ("demo", "files", "sql", "http")


def _format_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for e in err.errors():
        parts = [str(p) for p in e["loc"] if not str(p).startswith("function-")]
        # Discriminated unions put their tag in the location; drop it only where a union is.
        parts = [
            p for i, p in enumerate(parts)
            if not ((p in _SOURCE_KINDS and parts[:i] in (["source"], ["batch", "input"]))
                    or (i >= 2 and parts[i - 2] == "search_space"
                        and p in ("uniform", "loguniform", "randint", "choice")))
        ]
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # Pydantic places a bad or missing tag at the union; the user wrote the tag field.
            parts.append(str(e.get("ctx", {}).get("discriminator", "")).strip("'\""))
        loc = ".".join(p for p in parts if p)
        lines.append(f"  {loc or '<root>'}: {e['msg']}")
    return "\n".join(lines)


def _apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.field=value")
    key, raw = override.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {override!r} has an empty field name")
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {p!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def parse_config(
    data: Mapping[str, Any], overrides: Sequence[str] = (), origin: str = "<dict>"
) -> PipelineConfig:
    """Validate a mapping (plus ``section.field=value`` overrides) into a config."""
    try:
        merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data)))  # deep, plain copy
    except yaml.YAMLError as err:
        raise ConfigError(f"config {origin} holds values that are not plain data: {err}") from None
    for o in overrides:
        _apply_override(merged, o)
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_error(err, origin)) from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Load and validate a YAML config; ``None`` loads the bundled demo config.

    Raises:
        ConfigError: the file is missing, is not YAML, or breaks the model; the message names
            the file and every offending field.
    """
    p = Path(path) if path is not None else demo_config_path()
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {p} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(data).__name__}")
    return parse_config(data, overrides, origin=str(p))
