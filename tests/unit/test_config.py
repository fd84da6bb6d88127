"""Unit tests for pipelines.config: parsing, defaults, validation messages, overrides, loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipelines.config import (
    ConfigError,
    DemoSource,
    FileSource,
    PipelineConfig,
    load_config,
    parse_config,
)

MINIMAL: dict[str, Any] = {"name": "churn", "source": {"kind": "demo"}, "target": "churned"}


def with_(**sections: Any) -> dict[str, Any]:
    """MINIMAL plus the given top-level keys."""
    return {**MINIMAL, **sections}


def config_error(data: dict[str, Any], overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, overrides)
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config(MINIMAL)

    assert isinstance(cfg, PipelineConfig)
    assert cfg.name == "churn"
    assert cfg.target == "churned"
    assert cfg.task is None
    assert isinstance(cfg.source, DemoSource)
    assert (cfg.source.rows, cfg.source.seed) == (50_000, 7)
    assert cfg.schema_.columns == {}
    assert cfg.schema_.max_quarantine_fraction == pytest.approx(0.2)
    assert cfg.clean.impute_numeric == "median"
    assert cfg.clean.outliers == "iqr"
    assert cfg.features.categorical_encoding == "ordinal"
    assert cfg.features.datetime_parts == ["month", "dayofweek", "hour"]
    assert (cfg.split.train, cfg.split.valid, cfg.split.test) == (0.7, 0.15, 0.15)
    assert cfg.train.num_samples == 4
    assert cfg.train.num_workers == 1
    assert set(cfg.train.xgboost.search_space) == {"eta", "max_depth", "subsample", "min_child_weight"}
    assert cfg.evaluate.threshold == pytest.approx(0.5)
    assert cfg.serve.port == 8000
    assert cfg.tracking.alias == "champion"


def test_derived_settings_default_to_the_pipeline_name() -> None:
    cfg = parse_config(with_(runtime={"work_dir": "/tmp/rp"}))

    assert cfg.experiment_name == "churn"
    assert cfg.model_name == "churn"
    assert cfg.work_dir == Path("/tmp/rp")
    assert cfg.output_dir == Path("/tmp/rp/outputs/churn")
    assert cfg.storage_path.endswith("ray_results")


def test_default_search_space_dims_are_validated_models() -> None:
    from pipelines.config import Choice, LogUniform, RandInt, Uniform

    space = parse_config(MINIMAL).train.xgboost.search_space
    assert isinstance(space["eta"], LogUniform)
    assert isinstance(space["max_depth"], RandInt)
    assert isinstance(space["subsample"], Uniform)
    assert isinstance(space["min_child_weight"], Choice)


def test_explicit_search_space_dims_are_validated_models() -> None:
    from pipelines.config import Choice, LogUniform

    cfg = parse_config(with_(train={"xgboost": {"search_space": {
        "eta": {"type": "loguniform", "low": 0.01, "high": 0.3},
        "gamma": {"type": "choice", "values": [0, 1]},
    }}}))
    eta = cfg.train.xgboost.search_space["eta"]
    assert isinstance(eta, LogUniform)
    assert (eta.low, eta.high) == (0.01, 0.3)
    assert isinstance(cfg.train.xgboost.search_space["gamma"], Choice)


def test_empty_search_space_is_allowed() -> None:
    assert parse_config(with_(train={"xgboost": {"search_space": None}})).train.xgboost.search_space == {}


def test_default_search_space_is_not_shared_between_configs() -> None:
    a = parse_config(MINIMAL)
    b = parse_config(with_(train={"xgboost": {"search_space": {"eta": {"type": "uniform", "low": 0.1,
                                                           "high": 0.2}}}}))
    assert set(b.train.xgboost.search_space) == {"eta"}
    assert len(a.train.xgboost.search_space) == 4


def test_file_source_and_schema_alias() -> None:
    cfg = parse_config(
        with_(
            source={"kind": "files", "path": "data/*.csv", "format": "csv"},
            schema={"columns": {"age": {"type": "int", "min": 0, "max": 120}}},
        )
    )
    assert isinstance(cfg.source, FileSource)
    assert cfg.source.format == "csv"
    assert cfg.schema_.columns["age"].max == 120


def test_parse_config_does_not_mutate_its_input() -> None:
    data = with_(train={"num_samples": 2})
    parse_config(data, overrides=["train.num_samples=9"])
    assert data["train"] == {"num_samples": 2}


# --------------------------------------------------------------------------- rejected configs


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (with_(train={"bogus": 1}), "train.bogus"),
        (with_(bogus=1), "bogus"),
        (with_(source={"kind": "demo", "colour": "red"}), "source.colour"),
        (with_(serve={"port": 80, "tls": True}), "serve.tls"),
    ],
)
def test_extra_keys_are_rejected_naming_the_field(data: dict[str, Any], path: str) -> None:
    msg = config_error(data)
    assert f"{path}:" in msg
    assert "Extra inputs are not permitted" in msg


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (with_(train={"num_samples": "many"}), "train.num_samples"),
        (with_(train={"num_samples": 0}), "train.num_samples"),
        (with_(train={"search": "bayes"}), "train.search"),
        (with_(serve={"port": 70_000}), "serve.port"),
        (with_(source={"kind": "demo", "rows": 5}), "source.rows"),
        (with_(clean={"impute_numeric": "mode"}), "clean.impute_numeric"),
        (with_(evaluate={"threshold": 1.5}), "evaluate.threshold"),
        (with_(task="ranking"), "task"),
    ],
)
def test_wrong_types_and_values_name_the_field(data: dict[str, Any], path: str) -> None:
    msg = config_error(data)
    assert msg.startswith("invalid config <dict>:")
    assert f"  {path}:" in msg


@pytest.mark.parametrize("missing", ["name", "source", "target"])
def test_required_fields(missing: str) -> None:
    data = {k: v for k, v in MINIMAL.items() if k != missing}
    msg = config_error(data)
    assert f"{missing}: Field required" in msg


def test_file_source_needs_a_path() -> None:
    msg = config_error(with_(source={"kind": "files"}))
    assert "source.path: Field required" in msg


def test_bad_pipeline_name() -> None:
    msg = config_error(with_(name="has space"))
    assert "name:" in msg


def test_target_cannot_be_dropped() -> None:
    msg = config_error(with_(features={"drop": ["churned"]}))
    assert "features.drop lists the target column 'churned'" in msg


def test_split_fractions_must_sum_to_one() -> None:
    msg = config_error(with_(split={"train": 0.5, "valid": 0.2, "test": 0.2}))
    assert "split:" in msg
    assert "must be 1.0" in msg
    assert "0.9000" in msg


def test_split_fractions_summing_to_one_are_accepted() -> None:
    cfg = parse_config(with_(split={"train": 0.8, "valid": 0.1, "test": 0.1}))
    assert cfg.split.train == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("dim", "path", "fragment"),
    [
        ({"type": "loguniform", "low": 0, "high": 1}, "train.xgboost.search_space.d.low",
         "greater than 0"),
        ({"type": "loguniform", "low": -1e-3, "high": 1}, "train.xgboost.search_space.d.low",
         "greater than 0"),
        ({"type": "loguniform", "low": 0.5, "high": 0.1}, "train.xgboost.search_space.d",
         "must be below high"),
        ({"type": "uniform", "low": 1.0, "high": 1.0}, "train.xgboost.search_space.d",
         "must be below high"),
        ({"type": "uniform", "low": 2.0, "high": 1.0}, "train.xgboost.search_space.d",
         "must be below high"),
        ({"type": "randint", "low": 5, "high": 5}, "train.xgboost.search_space.d", "must be below high"),
        ({"type": "choice", "values": []}, "train.xgboost.search_space.d.values", "at least 1"),
        ({"type": "normal", "low": 0, "high": 1}, "train.xgboost.search_space.d.type",
         "'normal'"),
    ],
)
def test_bad_search_space_dims(dim: dict[str, Any], path: str, fragment: str) -> None:
    msg = config_error(with_(train={"xgboost": {"search_space": {"d": dim}}}))
    assert f"  {path}:" in msg
    assert fragment in msg


def test_column_contract_rules() -> None:
    msg = config_error(with_(schema={"columns": {"age": {"type": "int", "min": 5, "max": 1}}}))
    assert "schema.columns.age" in msg
    assert "greater than max" in msg
    msg = config_error(with_(schema={"columns": {"plan": {"type": "int", "allowed": ["a"]}}}))
    assert "allowed only applies to string columns" in msg


def test_error_path_keeps_a_column_named_like_a_union_tag() -> None:
    msg = config_error(with_(schema={"columns": {"files": {"type": "string", "min": 1}}}))
    assert "schema.columns.files" in msg


# --------------------------------------------------------------------------- overrides


def test_overrides_set_nested_fields() -> None:
    cfg = parse_config(
        MINIMAL,
        overrides=[
            "train.num_samples=8",
            "source.seed=3",
            "evaluate.threshold=0.3",
            "features.drop=[customer_id, region]",
            "tracking.uri=",
        ],
    )
    assert cfg.train.num_samples == 8
    assert isinstance(cfg.source, DemoSource)
    assert cfg.source.seed == 3
    assert cfg.evaluate.threshold == pytest.approx(0.3)
    assert cfg.features.drop == ["customer_id", "region"]
    assert cfg.tracking.uri is None


def test_search_defaults_to_random_and_takes_tpe_by_override() -> None:
    assert parse_config(MINIMAL).train.search == "random"
    assert parse_config(MINIMAL, overrides=["train.search=optuna"]).train.search == "optuna"
    assert parse_config(MINIMAL, overrides=["train.search=hyperopt"]).train.search == "hyperopt"


def test_override_value_keeps_text_after_first_equals() -> None:
    cfg = parse_config(MINIMAL, overrides=["tracking.uri=http://host:5000/?a=b"])
    assert cfg.tracking.uri == "http://host:5000/?a=b"


def test_later_override_wins() -> None:
    cfg = parse_config(MINIMAL, overrides=["train.num_samples=2", "train.num_samples=5"])
    assert cfg.train.num_samples == 5


def test_override_with_bad_value_names_the_field() -> None:
    msg = config_error(MINIMAL, overrides=("train.num_samples=many",))
    assert "train.num_samples:" in msg


def test_override_of_unknown_field_is_rejected() -> None:
    msg = config_error(MINIMAL, overrides=("train.bogus=1",))
    assert "train.bogus:" in msg


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.num_samples", "must look like section.field=value"),
        ("=3", "empty field name"),
        ("name.first=x", "'name' is not a section"),
    ],
)
def test_malformed_overrides(override: str, fragment: str) -> None:
    msg = config_error(MINIMAL, overrides=(override,))
    assert fragment in msg
    assert override in msg


# --------------------------------------------------------------------------- loading files


def test_load_config_reads_yaml_and_applies_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: churn\nsource:\n  kind: demo\n  rows: 1000\ntarget: churned\n")
    cfg = load_config(path, overrides=["train.num_samples=8"])
    assert cfg.source.rows == 1000  # type: ignore[union-attr]
    assert cfg.train.num_samples == 8


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path)


def test_load_config_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n  target: : :\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"),
                                            ("", "NoneType")])
def test_load_config_non_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="must hold a mapping") as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert kind in str(info.value)


def test_load_config_validation_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: churn\nsource: {kind: demo}\ntarget: churned\ntrain: {bogus: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"invalid config {path}:" in msg
    assert "train.bogus" in msg


# --------------------------------------------------------------------------- immutability


def test_config_is_frozen() -> None:
    cfg = parse_config(MINIMAL)
    with pytest.raises(ValidationError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.train.num_samples = 99  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.source.seed = 1  # type: ignore[misc]
    assert cfg.name == "churn"
    assert cfg.train.num_samples == 4


def test_configs_compare_by_value() -> None:
    assert parse_config(MINIMAL) == parse_config(MINIMAL)
    assert parse_config(MINIMAL) != parse_config(MINIMAL, overrides=["train.num_samples=8"])


def test_model_uris_follow_registered_model_and_alias() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.model_uri == "models:/churn@champion"
    assert cfg.version_uri(3) == "models:/churn/3"
    named = parse_config(with_(tracking={"registered_model": "churn-xgb", "alias": "staging"}))
    assert named.model_uri == "models:/churn-xgb@staging"
    assert named.version_uri("12") == "models:/churn-xgb/12"
    assert named.alias_uri("challenger") == "models:/churn-xgb@challenger"


# --------------------------------------------------------------------------- checked at load


def test_derived_expressions_are_checked_when_the_config_loads() -> None:
    msg = config_error(with_(features={"derived": [
        {"name": "ok", "expr": "log1p(a)"}, {"name": "r", "expr": "+".join(["a"] * 3000)}]}))
    assert "features.derived.1.expr" in msg and "derived feature 'r'" in msg
    assert len(msg) < 600  # names the field; does not echo 6,000 characters
    msg = config_error(with_(features={"derived": [{"name": "r", "expr": "a.real"}]}))
    assert "features.derived.0.expr" in msg and "Attribute" in msg
    parse_config(with_(features={"derived": [{"name": "r", "expr": "log1p(a) + b"}]}))


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "x" * 65, "has space", ""])
def test_registered_model_follows_the_pipeline_name_rule(name: str) -> None:
    assert "tracking.registered_model" in config_error(
        with_(tracking={"registered_model": name}))
    assert "name:" in config_error(with_(name=name))


@pytest.mark.parametrize("alias", ["../x", "a/b", "a@b", "", "a.b"])
def test_alias_is_restricted_like_mlflow_aliases(alias: str) -> None:
    assert "tracking.alias" in config_error(with_(tracking={"alias": alias}))


@pytest.mark.parametrize(("uri", "parsed"), [
    ("models:/churn@champion", ("churn", None, "champion")),
    ("models:/churn-xgb/12", ("churn-xgb", "12", None)),
    ("models:/m-abc123", ("m-abc123", None, None)),
    ("runs:/abc/model", (None, None, None)),
])
def test_model_uris_parse(uri: str, parsed: tuple[str | None, ...]) -> None:
    from pipelines.config import parse_model_uri

    assert parse_model_uri(uri) == parsed


@pytest.mark.parametrize("uri", [
    "models:/../../tmp/x@champion", "models:/a/b/c", "models:/churn/latest", "models:/churn/-1",
    "models:/churn@../x", "models:/churn@", "models:/@champion", "models:/.x/1", "models:/",
])
def test_model_uris_outside_the_name_rules_are_refused(uri: str) -> None:
    from pipelines.config import parse_model_uri

    with pytest.raises(ConfigError, match="models:/"):
        parse_model_uri(uri)
