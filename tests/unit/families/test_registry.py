"""The family registry: built-in, registered and plugin families; saved-model markers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.config import ConfigError, parse_config
from pipelines.families import (
    BaseFamily,
    FitContext,
    TrainData,
    UnknownFamilyError,
    family_names,
    get_family,
    load_predictor,
    register_family,
    registry,
)
from pipelines.families.registry import saved_family, write_family_marker
from pipelines.plugins import PluginError
from tests.plugin_helpers import install_plugin
from tests.toy_family import CentroidFamily


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the built-in families only (importing tests.toy_family registered
    the centroid family in this process) and what it registers is gone after it."""
    monkeypatch.setattr(registry, "_registered", {})


def _config(train: dict[str, Any]) -> dict[str, Any]:
    return {"name": "x", "source": {"kind": "demo"}, "target": "churned", "train": train}


def _fit_toy(tmp_path: Path) -> tuple[Any, TrainData]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(float)
    data = TrainData(X, y, ["a", "b", "c"])
    fam = CentroidFamily()
    ctx = FitContext(task="binary", num_classes=2, metric="logloss", report=lambda m: None)
    result = fam.fit({}, data, data, ctx)
    fam.save(result.model, tmp_path)
    write_family_marker(tmp_path, fam)
    return result, data


def test_built_in_families_are_listed_without_importing_them() -> None:
    assert family_names()[:3] == ("xgboost", "mlp", "linear")
    assert get_family("linear").name == "linear"


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(UnknownFamilyError, match="unknown model family 'forest'; choose from "
                                                 "xgboost, mlp, linear"):
        get_family("forest")


def test_a_registered_family_is_found_and_a_second_one_of_that_name_refused() -> None:
    assert register_family(CentroidFamily) is CentroidFamily  # works as a class decorator
    assert "centroid" in family_names()
    assert isinstance(get_family("centroid"), CentroidFamily)
    register_family(CentroidFamily())  # the same class again: nothing changes

    class Other(CentroidFamily):
        pass

    with pytest.raises(ValueError, match="'centroid' is already registered"):
        register_family(Other)
    register_family(Other, replace=True)
    assert isinstance(get_family("centroid"), Other)
    with pytest.raises(ValueError, match="'xgboost' is already registered"):
        register_family(type("X", (CentroidFamily,), {"name": "xgboost"}))


def test_what_is_not_a_family_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks fit, save, load"):
        register_family(type("Nothing", (), {"name": "nothing"}))
    with pytest.raises(ValueError, match="must be a Python identifier"):
        register_family(type("Bad", (CentroidFamily,), {"name": "my-family"}))


FAMILY_PLUGIN = """
    from tests.toy_family import CentroidFamily

    class PluginFamily(CentroidFamily):
        name = "centroid_plugin"
"""


def test_an_installed_plugin_is_found_by_its_entry_point(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "raypipe_family_plugin", FAMILY_PLUGIN,
                   "raypipe.families", "centroid_plugin = raypipe_family_plugin:PluginFamily")
    listed, imported = family_names(), "raypipe_family_plugin" in sys.modules
    assert "centroid_plugin" in listed and not imported
    # As in a CLI run, the config is validated before anything imported the plugin.
    train = {"families": ["centroid_plugin"], "centroid_plugin": {"params": {"temperature": 2.0}}}
    cfg = parse_config(_config(train))
    assert cfg.train.family_settings("centroid_plugin").params == {"temperature": 2.0}
    assert type(get_family("centroid_plugin")).__name__ == "PluginFamily"


def test_a_broken_or_misnamed_family_plugin_names_itself(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "raypipe_family_broken", "import no_such_module\n",
                   "raypipe.families", "broken = raypipe_family_broken:Family")
    with pytest.raises(PluginError, match=r"raypipe.families entry point 'broken' = "
                       r"'raypipe_family_broken:Family' cannot be loaded: ModuleNotFoundError"):
        get_family("broken")
    install_plugin(tmp_path / "2", monkeypatch, "raypipe_family_misnamed", FAMILY_PLUGIN,
                   "raypipe.families", "other = raypipe_family_misnamed:PluginFamily")
    with pytest.raises(UnknownFamilyError, match="entry point 'other' is the family "
                                                 "'centroid_plugin'; the names must agree"):
        get_family("other")


def test_a_model_saved_by_an_unregistered_family_loads_from_its_class(tmp_path: Path) -> None:
    # As in a batch actor or a Serve replica: the family was registered in the driver only.
    result, data = _fit_toy(tmp_path)
    marker = json.loads((tmp_path / "family.json").read_text())
    assert marker == {"family": "centroid", "class": "tests.toy_family:CentroidFamily"}
    assert "centroid" not in family_names()
    np.testing.assert_array_equal(load_predictor(tmp_path).predict_raw(data.X),
                                  result.model.predict_raw(data.X))
    assert isinstance(saved_family(tmp_path), CentroidFamily)


def test_a_marker_whose_class_is_not_the_named_family_is_refused(tmp_path: Path) -> None:
    _fit_toy(tmp_path)
    (tmp_path / "family.json").write_text(json.dumps(
        {"family": "centroid", "class": "pipelines.families.linear:LinearFamily"}))
    with pytest.raises(UnknownFamilyError, match="is not the model family 'centroid'"):
        load_predictor(tmp_path)
    (tmp_path / "family.json").write_text(json.dumps(
        {"family": "centroid", "class": "no_such_module:Family"}))
    with pytest.raises(UnknownFamilyError, match="cannot be imported here"):
        load_predictor(tmp_path)
    (tmp_path / "family.json").write_text(json.dumps({"family": "centroid"}))
    with pytest.raises(UnknownFamilyError, match="unknown model family 'centroid'"):
        load_predictor(tmp_path)


def test_the_config_takes_a_registered_family_and_its_section() -> None:
    with pytest.raises(ConfigError, match=r"train\.families: .*unknown model family 'centroid'"):
        parse_config(_config({"families": ["centroid"]}))
    with pytest.raises(ConfigError, match=r"train\.centroid: Extra inputs are not permitted"):
        parse_config(_config({"centroid": {"params": {"temperature": 2.0}}}))
    register_family(CentroidFamily)
    cfg = parse_config(_config({
        "families": ["centroid", "xgboost"],
        "centroid": {"params": {"temperature": 2.0},
                     "search_space": {"alpha": {"type": "uniform", "low": 0.1, "high": 1.0}}},
    }))
    section = cfg.train.family_settings("centroid")
    assert section.params == {"temperature": 2.0}
    assert set(section.search_space) == {"alpha"}
    assert cfg.model_dump()["train"]["centroid"]["params"] == {"temperature": 2.0}
    assert cfg.train.family_settings("xgboost") is cfg.train.xgboost
    with pytest.raises(ConfigError, match=r"train\.centroid\.params: Input should be a valid"):
        parse_config(_config({"families": ["centroid"], "centroid": {"params": 3}}))
    with pytest.raises(ConfigError, match=r"train\.num_sample: Extra inputs are not permitted"):
        parse_config(_config({"num_sample": 3}))


def test_a_family_may_not_take_a_train_setting_s_name() -> None:
    register_family(type("Seed", (CentroidFamily,), {"name": "seed"}))
    with pytest.raises(ConfigError, match="'seed' has the name of a train setting"):
        parse_config(_config({"families": ["seed"]}))


def test_base_family_defaults_describe_an_in_process_family() -> None:
    fam = BaseFamily()
    assert fam.data_parallel is None and fam.requirements == ()
    assert fam.fixed_iterations({"a": 1}, 5) == {"a": 1}
    assert get_family("xgboost").fixed_iterations({"num_boost_round": 200}, 37) == {
        "num_boost_round": 37, "early_stopping_rounds": 38}
    assert get_family("mlp").fixed_iterations({"max_epochs": 30, "patience": 5}, 7) == {
        "max_epochs": 7, "patience": 8}
    assert get_family("linear").requirements == ("scikit-learn",)
