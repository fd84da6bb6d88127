"""Config validation of the source kinds: every error names the field and how to fix it."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.config import ConfigError, HttpSource, SqlSource, parse_config


def _error(source: dict[str, Any], where: str = "source") -> str:
    data: dict[str, Any] = {"name": "t", "target": "y", "source": {"kind": "demo"}}
    if where == "source":
        data["source"] = source
    else:
        data["batch"] = {"input": source}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_sql_and_http_sources_parse() -> None:
    cfg = parse_config({"name": "t", "target": "y", "source": {
        "kind": "sql", "url": "postgresql://app@db:5432/shop", "table": "public.orders",
        "password_env": "PGPASSWORD", "shard_key": "id", "parallelism": 4}})
    assert isinstance(cfg.source, SqlSource) and cfg.source.shard_key == "id"
    cfg = parse_config({"name": "t", "target": "y", "source": {
        "kind": "http", "url": "https://api.example.com/v1/rows", "total_path": "meta.total"}})
    assert isinstance(cfg.source, HttpSource) and cfg.source.pagination == "page"


def test_sql_needs_exactly_one_of_table_and_query() -> None:
    assert "source: Value error, give exactly one of table and query" in _error(
        {"kind": "sql", "url": "sqlite:///x.db"})
    assert "give exactly one" in _error(
        {"kind": "sql", "url": "sqlite:///x.db", "table": "t", "query": "SELECT 1"})


def test_sql_refuses_passwords_in_the_url_and_odd_names() -> None:
    assert "source.url: Value error, holds a password" in _error(
        {"kind": "sql", "url": "postgresql://app:secret@db/shop", "table": "t"})
    assert "source.url: Value error, holds a password" in _error(
        {"kind": "sql", "url": "postgresql://app@db/shop?sslmode=require&Password=x", "table": "t"})
    assert "source.url: Value error, must start with sqlite:/// or postgresql://" in _error(
        {"kind": "sql", "url": "mysql://db/shop", "table": "t"})
    assert "not a plain [schema.]table name" in _error(
        {"kind": "sql", "url": "sqlite:///x.db", "table": "t; DROP TABLE t"})
    assert "source.password_env: Value error, 'hunter2!' is not an environment variable" in _error(
        {"kind": "sql", "url": "sqlite:///x.db", "table": "t", "password_env": "hunter2!"})
    assert "parallelism needs shard_key" in _error(
        {"kind": "sql", "url": "sqlite:///x.db", "table": "t", "parallelism": 4})


def test_http_secret_headers_and_params_name_variables_and_no_value_twice() -> None:
    assert "'api key!' is not an environment variable" in _error(
        {"kind": "http", "url": "http://x/y", "params_env": {"api_key": "api key!"}})
    assert "'X-Api-Key' is in both headers and headers_env" in _error(
        {"kind": "http", "url": "http://x/y", "headers": {"X-Api-Key": "k"},
         "headers_env": {"X-Api-Key": "API_KEY"}})


def test_http_option_combinations() -> None:
    assert "source.url: Value error, must be an http:// or https:// URL" in _error(
        {"kind": "http", "url": "ftp://x/y"})
    assert "total_path only applies to page or offset" in _error(
        {"kind": "http", "url": "http://x/y", "pagination": "cursor", "total_path": "n"})
    assert "source.timeout_s: Input should be greater than 0" in _error(
        {"kind": "http", "url": "http://x/y", "timeout_s": 0})
    assert "source.surprise: Extra inputs are not permitted" in _error(
        {"kind": "http", "url": "http://x/y", "surprise": 1})
    assert "next_url_hosts only applies to cursor pagination" in _error(
        {"kind": "http", "url": "http://x/y", "next_url_hosts": ["x"]})
    assert "source.next_url_hosts: Value error, 'https://x' is not a host name" in _error(
        {"kind": "http", "url": "http://x/y", "pagination": "cursor",
         "next_url_hosts": ["https://x"]})


def test_http_reads_are_bounded_by_default() -> None:
    src = HttpSource(url="https://api.example.com/v1", pagination="cursor",
                     next_url_hosts=["API-EU.example.com:8443"])
    assert (src.max_pages, src.max_response_bytes) == (10_000, 64 * 2**20)
    assert src.next_url_hosts == ["api-eu.example.com:8443"]


def test_csv_options_only_apply_to_csv() -> None:
    assert "delimiter, column_types only apply to format csv" in _error(
        {"kind": "files", "path": "x.parquet", "delimiter": ";", "column_types": {"a": "string"}})


def test_batch_input_errors_name_the_field_without_the_kind_tag() -> None:
    msg = _error({"kind": "sql", "url": "sqlite:///x.db"}, where="batch")
    assert "batch.input: Value error, give exactly one of table and query" in msg
