"""``kind: raydata``: its settings checked against the reader's signature, without Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import ConfigError, parse_config
from pipelines.lineage import fingerprint_files
from pipelines.sources import get_reader, source_kinds
from pipelines.sources.raydata import RayDataReader, RayDataSource, reader_signatures

PASSWORD = "hunter" + "2"  # assembled: no secret-shaped text for tests/unit/test_no_secrets.py
SQLITE = {"connection_factory": {"function": "sqlite3.connect", "args": {"database": "x.db"}}}


def _parse(source: dict[str, Any]) -> Any:
    return parse_config({"name": "t", "target": "y", "source": {"kind": "raydata", **source}})


def _error(source: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(source)
    return str(info.value)


def test_a_reader_with_its_arguments_parses_into_the_raydata_model() -> None:
    cfg = _parse({"reader": "read_sql", "args": {"sql": "SELECT * FROM t"}, "factories": SQLITE})
    assert isinstance(cfg.source, RayDataSource)
    assert cfg.source.factories["connection_factory"].function == "sqlite3.connect"
    assert isinstance(get_reader(cfg.source, Path(".")), RayDataReader)
    assert "raydata" in source_kinds()
    # batch.input takes any source kind, this one too
    batch = parse_config({"name": "t", "target": "y", "source": {"kind": "demo"}, "batch": {
        "input": {"kind": "raydata", "reader": "read_json", "args": {"paths": "x.jsonl"}}}})
    assert isinstance(batch.batch.input, RayDataSource)


def test_an_unknown_argument_is_named_with_what_the_reader_takes() -> None:
    message = _error({"reader": "read_sql", "args": {"sql": "SELECT 1", "shard_key": "id"},
                      "factories": SQLITE})
    assert "source.args.shard_key: read_sql has no argument 'shard_key'" in message
    assert "shard_keys" in message  # the list of what it takes
    assert "source.args_env.sqll: read_sql has no argument" in _error(
        {"reader": "read_sql", "args": {"sql": "SELECT 1"}, "args_env": {"sqll": "Q"},
         "factories": SQLITE})


def test_required_arguments_missing_and_unknown_readers_are_refused() -> None:
    assert "read_sql needs connection_factory" in _error(
        {"reader": "read_sql", "args": {"sql": "SELECT 1"}})
    assert "read_csv needs paths" in _error({"reader": "read_csv"})
    message = _error({"reader": "read_jsonl"})
    assert "'read_jsonl' is not a ray.data reader" in message and "read_json," in message
    assert "takes a Datasource object" in _error({"reader": "read_datasource"})
    assert "in both source.args and source.factories" in _error(
        {"reader": "read_sql", "args": {"sql": "SELECT 1", "connection_factory": "x"},
         "factories": SQLITE})


def test_readers_taking_keyword_arguments_on_to_pyarrow_accept_other_names() -> None:
    cfg = _parse({"reader": "read_json", "args": {"paths": "x.jsonl", "block_size": 1024}})
    assert cfg.source.args["block_size"] == 1024
    assert reader_signatures()["read_json"].any_keyword


def test_secrets_are_refused_in_the_yaml_and_named_in_args_env() -> None:
    message = _error({"reader": "read_json", "args": {"paths": "x.jsonl", "token": "abc"}})
    assert "source.args.token is a secret" in message and "source.args_env" in message
    message = _error({"reader": "read_sql", "args": {"sql": "SELECT 1"}, "factories": {
        "connection_factory": {"function": "psycopg.connect",
                               "args": {"conninfo": f"postgresql://app:{PASSWORD}@db/shop"}}}})
    assert "source.factories.connection_factory.args.conninfo holds a credential" in message
    assert PASSWORD not in message
    assert "not an environment variable name" in _error(
        {"reader": "read_sql", "args": {"sql": "SELECT 1"}, "factories": {
            "connection_factory": {"function": "psycopg.connect",
                                   "args_env": {"password": "hunter2!"}}}})
    assert "not a dotted path" in _error(
        {"reader": "read_sql", "args": {"sql": "SELECT 1"},
         "factories": {"connection_factory": {"function": "connect"}}})


def test_signatures_read_from_source_match_the_functions() -> None:
    import inspect

    import ray.data

    for name, sig in reader_signatures().items():
        params = inspect.signature(getattr(ray.data, name)).parameters.values()
        named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert sig.names == tuple(p.name for p in named), name
        assert sig.required == tuple(p.name for p in named if p.default is p.empty), name


def test_checking_a_config_does_not_import_ray(tmp_path: Path) -> None:
    script = ("import json, sys\n"
              "from pipelines.config import parse_config\n"
              "parse_config({'name': 't', 'target': 'y', 'source': json.loads(sys.argv[1])})\n"
              "print('ray' in sys.modules)\n")
    source = {"kind": "raydata", "reader": "read_sql", "args": {"sql": "SELECT 1"},
              "factories": SQLITE}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(source)], cwd=Path.cwd(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_path_readers_are_fingerprinted_by_their_files_and_name_their_locations(
        tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"part-{i}.jsonl").write_text(f'{{"x": {i}}}\n')
    cfg = _parse({"reader": "read_json", "args": {"paths": str(tmp_path / "*.jsonl")}})
    reader = get_reader(cfg.source, tmp_path)
    files = [str(tmp_path / "part-0.jsonl"), str(tmp_path / "part-1.jsonl")]
    assert reader.fingerprint() == (str(tmp_path / "*.jsonl"), fingerprint_files(files))
    assert [loc.field for loc in reader.locations()] == ["source.args.paths"]
    assert reader.rows(None) is None  # validation counts the rows
    before = reader.fingerprint()[1]
    (tmp_path / "part-1.jsonl").write_text('{"x": 2}\n')
    assert reader.fingerprint()[1] != before
