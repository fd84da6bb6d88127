"""Source kinds by name: built-in readers, registered plugins, installed entry points, and a
plugin kind's settings validated by the config like any section. No Ray is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

import pipelines.config.sources as config_sources
from pipelines.config import ConfigError, DemoSource, FileSource, HttpSource, SqlSource, parse_config
from pipelines.config.sources import BUILTIN_MODULE_KINDS, BUILTIN_SOURCE_KINDS, SourceConfig
from pipelines.sources import (
    SourceKindError,
    SourceReader,
    get_reader,
    register_source,
    registry,
    source_kinds,
)
from pipelines.storage.shared import pipeline_locations
from tests.plugin_helpers import install_plugin

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _fresh_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers into copies: what it adds is gone after it."""
    monkeypatch.setattr(registry, "_READERS", dict(registry._READERS))
    monkeypatch.setattr(config_sources, "_PLUGINS", dict(config_sources._PLUGINS))


class BoxSource(SourceConfig):
    """A plugin kind's settings, with a validated field."""

    kind: Literal["box"] = "box"
    size: int = Field(3, ge=1)
    label: str = "cube"


class BoxReader(SourceReader[BoxSource]):
    kind = "box"
    config_type = BoxSource

    def read(self) -> Any:
        raise NotImplementedError

    def fingerprint(self, dataset: Any = None) -> tuple[str, str]:
        return f"box://{self.config.size}", "0" * 64


def _config(source: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"name": "reg-test", "source": source, "target": "y", **sections}


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


# --------------------------------------------------------------------------- built-in kinds


@pytest.mark.parametrize(("kind", "model", "settings"), [
    ("demo", DemoSource, {}),
    ("files", FileSource, {"path": "data/*.parquet"}),
    ("sql", SqlSource, {"url": "sqlite:///x.db", "table": "t"}),
    ("http", HttpSource, {"url": "http://api.example.com/items"}),
])
def test_each_built_in_kind_has_its_reader(kind: str, model: type[SourceConfig],
                                           settings: dict[str, Any], tmp_path: Path) -> None:
    source = parse_config(_config({"kind": kind, **settings})).source
    reader = get_reader(source, tmp_path)
    assert type(source) is model
    assert reader.kind == kind and reader.config_type is model
    assert reader.config is source and reader.work_dir == tmp_path
    assert list(tmp_path.iterdir()) == []  # making a reader does no work (the demo is not written)


def test_the_readers_kinds_are_the_configs_kinds() -> None:
    assert BUILTIN_SOURCE_KINDS == ("demo", "files", "sql", "http")
    # raydata keeps its settings with its reader (pipelines/sources/raydata.py)
    assert tuple(registry._BUILTIN) == (*BUILTIN_SOURCE_KINDS, *BUILTIN_MODULE_KINDS) \
        == (*BUILTIN_SOURCE_KINDS, "raydata")
    assert source_kinds()[:5] == tuple(registry._BUILTIN)


def test_importing_the_registry_imports_no_reader_and_no_ray() -> None:
    code = ("import sys, pipelines.sources.registry, pipelines.stages.ingest, pipelines.storage\n"
            "heavy = [m for m in sys.modules if m in ('ray', 'pyarrow', 'pipelines.sources.sql',"
            " 'pipelines.sources.http', 'pipelines.sources.demo')]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_each_kind_names_the_places_it_reads(tmp_path: Path) -> None:
    def last(source: dict[str, Any]) -> tuple[str, str]:
        cfg = parse_config(_config(source, runtime={"work_dir": str(tmp_path)}))
        loc = pipeline_locations(cfg)[-1]
        return loc.field, loc.uri

    assert last({"kind": "demo"}) == ("runtime.work_dir", str(tmp_path / "data"))
    assert last({"kind": "files", "path": "/data/x"}) == ("source.path", "/data/x")
    assert last({"kind": "sql", "url": "sqlite:///x.db", "table": "t"}) == ("source.url",
                                                                             "sqlite:///x.db")
    register_source(BoxReader)
    with_box = pipeline_locations(parse_config(_config({"kind": "box"})))
    without = pipeline_locations(parse_config(_config({"kind": "http", "url": "http://a/b"})))
    assert with_box == without  # neither reads a local place


# --------------------------------------------------------------------------- registering


def test_unknown_kind_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SourceKindError, match=r"unknown source kind 'nope'; choose from demo, "
                       r"files, sql, http") as info:
        registry.reader_class("nope")
    assert isinstance(info.value, ConfigError)
    register_source(BoxReader)
    with pytest.raises(SourceKindError, match="http, raydata, box"):
        registry.reader_class("nope")


def test_register_rules() -> None:
    assert register_source(BoxReader) is BoxReader
    assert register_source(BoxReader) is BoxReader  # the same class again: nothing happens
    assert registry.reader_class("box") is BoxReader

    class OtherBox(BoxReader):
        pass

    with pytest.raises(SourceKindError, match=r"'box' is already handled by .*BoxReader; pass "
                       r"replace=True"):
        register_source(OtherBox)
    assert register_source(replace=True)(OtherBox) is OtherBox  # decorator form
    assert registry.reader_class("box") is OtherBox

    class MyFiles(BoxReader):
        kind = "files"

    with pytest.raises(SourceKindError, match=r"'files' is already handled by "
                       r"pipelines.sources.files:FileReader"):
        register_source(MyFiles)
    with pytest.raises(SourceKindError, match="not a SourceReader subclass"):
        register_source(BoxSource)  # type: ignore[type-var]


def test_a_config_model_must_default_to_its_kind() -> None:
    class Mislabelled(BoxReader):
        kind = "crate"

    with pytest.raises(ConfigError, match=r"BoxSource.kind must default to 'crate'"):
        register_source(Mislabelled)
    with pytest.raises(SourceKindError, match="unknown source kind 'crate'"):
        registry.reader_class("crate")


def test_get_reader_refuses_settings_of_another_kind(tmp_path: Path) -> None:
    register_source(BoxReader)
    with pytest.raises(SourceKindError, match="BoxReader reads BoxSource settings, got"):
        get_reader(SourceConfig(kind="box"), tmp_path)


# --------------------------------------------------------------------------- plugin config


def test_a_plugin_kind_validates_through_parse_config() -> None:
    register_source(BoxReader)
    cfg = parse_config(_config({"kind": "box", "size": 5}, batch={"input": {"kind": "box"}}))
    assert cfg.source == BoxSource(size=5)
    assert cfg.batch.input == BoxSource()
    dumped = cfg.model_dump(mode="json", by_alias=True)  # what the runner logs to MLflow
    assert dumped["source"] == {"kind": "box", "size": 5, "label": "cube"}
    assert dumped["batch"]["input"] == {"kind": "box", "size": 3, "label": "cube"}
    assert parse_config(dumped) == cfg  # and it reads back
    assert parse_config(_config({"kind": "box"}), ["source.size=9"]).source == BoxSource(size=9)


def test_a_plugin_kinds_errors_name_its_fields() -> None:
    register_source(BoxReader)
    msg = _error(_config({"kind": "box", "size": 0, "colour": "red"}))
    assert "  source.size: Input should be greater than or equal to 1" in msg
    assert "  source.colour: Extra inputs are not permitted" in msg
    msg = _error(_config({"kind": "demo"}, batch={"input": {"kind": "box", "size": "big"}}))
    assert "  batch.input.size: Input should be a valid integer" in msg


def test_an_unknown_kind_names_source_kind_and_every_allowed_kind() -> None:
    register_source(BoxReader)
    msg = _error(_config({"kind": "cube"}))
    assert ("  source.kind: unknown source kind 'cube'; choose from demo, files, sql, http, "
            "raydata, box") in msg
    msg = _error(_config({"kind": "demo"}, batch={"input": {"kind": "cube"}}))
    assert "  batch.input.kind: unknown source kind 'cube'" in msg
    # The built-in kinds keep their own messages and locations.
    assert "  source.path: Field required" in _error(_config({"kind": "files"}))


# --------------------------------------------------------------------------- entry points


PLUGIN = """
    from typing import Literal
    from pipelines.config import SourceConfig
    from pipelines.sources import SourceReader

    class CrateSource(SourceConfig):
        kind: Literal["crate"] = "crate"
        slots: int = 2

    class CrateReader(SourceReader[CrateSource]):  # no decorator: the entry point is enough
        kind = "crate"
        config_type = CrateSource

        def read(self):
            raise NotImplementedError

        def fingerprint(self, dataset=None):
            return "crate://", "0" * 64
"""


def test_an_installed_entry_point_is_found_by_its_kind(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "raypipe_crate_plugin", PLUGIN,
                   "raypipe.sources", "crate = raypipe_crate_plugin:CrateReader")
    assert "crate" in source_kinds()
    assert "raypipe_crate_plugin" not in sys.modules  # listed, not imported
    # A CLI run: the config is validated before anything imported the plugin.
    cfg = parse_config(_config({"kind": "crate", "slots": 4}))
    assert type(cfg.source).__name__ == "CrateSource" and cfg.model_dump()["source"]["slots"] == 4
    reader = get_reader(cfg.source, tmp_path)
    assert type(reader).__name__ == "CrateReader" and reader.fingerprint()[0] == "crate://"
    assert "  source.slots: Input should be a valid integer" in _error(
        _config({"kind": "crate", "slots": "x"}))


def test_a_broken_entry_point_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "raypipe_broken_plugin", "import no_such_module_here\n",
                   "raypipe.sources", "broken = raypipe_broken_plugin:Reader")
    from pipelines.plugins import PluginError

    with pytest.raises(PluginError, match=r"entry point 'broken' = 'raypipe_broken_plugin:Reader' "
                       r"cannot be loaded: ModuleNotFoundError"):
        registry.reader_class("broken")
    assert "  source.kind: raypipe.sources entry point 'broken'" in _error(
        _config({"kind": "broken"}))
