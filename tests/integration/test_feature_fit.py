"""Fitting the feature pipeline on Ray Data: statistics, row cleaning, selection and the
guarantee that only the training split is ever read."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import CleanConfig, FeaturesConfig, SplitConfig
from pipelines.features.fit import FeatureConfigError, fit_feature_pipeline
from pipelines.stages.clean import REASON_COLUMN, clean_and_fit, drop_duplicates
from pipelines.stages.split import split_dataset

pytestmark = pytest.mark.integration


def frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "a": rng.normal(10, 2, n),
        "b": rng.exponential(3, n),
        "const": np.ones(n),
        "color": rng.choice(["red", " Red", "GRN", "green", "blue"], n),
        "code": rng.integers(0, 4, n),
        "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), "h"),
        "y": rng.integers(0, 2, n),
    })
    df["a_copy"] = df["a"] * 2 + 1
    df.loc[::10, "a"] = np.nan
    df.loc[3, "color"] = None
    df.loc[7, "b"] = 500.0
    return df


def fit(df: pd.DataFrame, **kw: Any) -> Any:
    import ray

    clean = CleanConfig(**kw.pop("clean", {}))
    features = FeaturesConfig(**kw.pop("features", {}))
    return fit_feature_pipeline(ray.data.from_pandas(df), target="y", task="binary",
                                clean=clean, features=features)


def test_statistics_are_those_of_the_training_rows(ray_address: str) -> None:
    df = frame()
    pipe = fit(df, clean={"missing_indicators": True, "synonyms": {"color": {"grn": "green"}},
                          "impute_columns": {"b": {"strategy": "mean"},
                                             "a_copy": {"strategy": "constant", "value": -5}}},
               features={"bins": [{"column": "b", "n_bins": 4}]})
    a = df["a"].dropna()
    assert pipe.numeric["a"].fill == pytest.approx(a.median(), rel=0.02)
    q1, q3 = a.quantile(0.25), a.quantile(0.75)
    assert pipe.numeric["a"].lower == pytest.approx(q1 - 3 * (q3 - q1), rel=0.05)
    assert pipe.numeric["b"].fill == pytest.approx(df["b"].mean())
    assert pipe.numeric["a_copy"].fill == -5.0
    assert pipe.numeric["a"].indicator and not pipe.numeric["b"].indicator
    assert pipe.categorical["color"].indicator
    # " Red" / "red" and "GRN" / "green" are one category each after cleaning.
    assert sorted(pipe.categorical["color"].vocab) == ["blue", "green", "red"]
    edges = pipe.bins[0].edges
    assert len(edges) == 3
    np.testing.assert_allclose(edges, df["b"].quantile([0.25, 0.5, 0.75]), rtol=0.1)


def test_zscore_bounds_most_frequent_and_coercion(ray_address: str) -> None:
    df = frame()
    pipe = fit(df, clean={"outliers": "zscore", "zscore_threshold": 2.0,
                          "impute_numeric": "most_frequent", "coerce": {"code": "string"}})
    b = df["b"]
    assert pipe.numeric["b"].upper == pytest.approx(b.mean() + 2 * b.std(ddof=0), rel=1e-6)
    assert pipe.input_schema["code"] == "string"
    assert sorted(pipe.categorical["code"].vocab) == ["0", "1", "2", "3"]
    assert pipe.numeric["const"].fill == 1.0


@pytest.mark.slow  # a whole pipeline run
def test_valid_and_test_rows_never_move_the_fitted_statistics(ray_address: str) -> None:
    """Time split: the newest 30% are valid/test. Replacing their values by anything at all
    (hypothesis) leaves every fitted statistic unchanged."""
    import ray

    base = frame(300, seed=1)
    cfg = SplitConfig(strategy="time", time_column="t", train=0.7, valid=0.15, test=0.15)
    clean = CleanConfig(outliers="zscore", missing_indicators=True)
    features = FeaturesConfig(scaling="standard", bins=[{"column": "b", "n_bins": 3}],
                              selection={"method": "variance"})

    def fitted(df: pd.DataFrame) -> dict[str, Any]:
        train, _, _ = split_dataset(ray.data.from_pandas(df), cfg, "y", classification=True)
        return clean_and_fit(train, target="y", task="binary", clean=clean,
                             features=features).pipeline.model_dump(mode="json")

    reference = fitted(base)
    late = base.index[base["t"] >= base["t"].quantile(0.7, interpolation="higher")]

    @settings(max_examples=2, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.floats(-1e9, 1e9), st.sampled_from(["purple", "RED", None]), st.booleans())
    def check(value: float, color: Any, flip: bool) -> None:
        df = base.copy()
        df.loc[late, ["a", "b", "a_copy"]] = value
        df.loc[late, "color"] = color
        if flip:
            df.loc[late, "y"] = 1 - df.loc[late, "y"]
        assert_same_statistics(fitted(df), reference)

    check()


def assert_same_statistics(got: Any, want: Any, where: str = "pipeline") -> None:
    """Equal, floats up to summation order (blocks may be combined in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            assert_same_statistics(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_statistics(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


def test_drop_row_and_outlier_quarantine_lose_no_row(ray_address: str) -> None:
    import ray

    df = frame()
    ds = ray.data.from_pandas(df)
    res = clean_and_fit(ds, target="y", task="binary",
                        clean=CleanConfig(impute_columns={"a": {"strategy": "drop_row"}},
                                          outlier_action="quarantine", dedupe=False),
                        features=FeaturesConfig())
    quarantined = pd.concat([q.to_pandas() for q in res.quarantined])
    assert res.counts["rows_train_dropped_missing"] == df["a"].isna().sum() == 40
    assert res.counts["rows_train_outliers_quarantined"] >= 1
    assert res.train.count() + len(quarantined) == len(df)
    reasons = quarantined[REASON_COLUMN].tolist()
    assert sum("a: missing value (impute strategy drop_row)" in r for r in reasons) == 40
    assert any(r.startswith("clean: b: outlier 500.0 outside") for r in reasons)
    # drop_row is a training decision: at inference a missing value is filled, not refused.
    out = res.pipeline.transform(df.head(1).assign(a=np.nan))
    assert out["a"].iloc[0] == res.pipeline.numeric["a"].fill


@pytest.mark.slow  # a hash shuffle per order
@pytest.mark.parametrize("driver_rows", [1_000, 0], ids=["hashes-in-driver", "hash-shuffle"])
def test_dedupe_on_a_key_keeps_one_row_per_key_whatever_the_order(ray_address: str,
                                                                  driver_rows: int) -> None:
    import ray

    df = pd.DataFrame({"k": [1, 1, 2, 2, 2, 3], "v": [5.0, 6.0, 7.0, 7.0, 8.0, 9.0]})
    one = drop_duplicates(ray.data.from_pandas([df.iloc[:3], df.iloc[3:]]), key=["k"],
                          driver_rows=driver_rows).to_pandas()
    two = drop_duplicates(ray.data.from_pandas(df.iloc[::-1]), key=["k"],
                          driver_rows=driver_rows).to_pandas()
    assert sorted(one["k"]) == [1, 2, 3]
    assert one.sort_values("k").reset_index(drop=True).equals(
        two.sort_values("k").reset_index(drop=True))
    # Equal rows in different blocks meet; a frame without duplicates passes whole.
    everything = drop_duplicates(ray.data.from_pandas([df.iloc[:3], df.iloc[2:]]),
                                 driver_rows=driver_rows).to_pandas()
    assert len(everything) == 5 and list(everything.columns) == ["k", "v"]
    assert drop_duplicates(ray.data.from_pandas(df.iloc[[0, 2, 5]]),
                           driver_rows=driver_rows).count() == 3
    with pytest.raises(ValueError, match=r"dedupe_key.*nope"):
        drop_duplicates(ray.data.from_pandas(df), key=["nope"])


def test_selection_is_frozen_and_scaling_standardises_train(ray_address: str) -> None:
    df = frame()
    corr = fit(df, features={"selection": {"method": "correlation"}, "scaling": "standard"})
    assert "const" in corr.dropped_features and "a_copy" in corr.dropped_features
    assert "a" in corr.feature_names and "a_copy" not in corr.feature_names
    X = corr.transform(df)
    assert list(X.columns) == corr.feature_names
    np.testing.assert_allclose(X.mean().to_numpy(), 0, atol=1e-9)
    np.testing.assert_allclose(X.std(ddof=0).to_numpy(), 1, atol=1e-9)

    top = fit(df, features={"selection": {"method": "importance", "top_k": 3}})
    assert len(top.feature_names) == 3
    assert set(top.dropped_features) | set(top.feature_names) == set(corr.dropped_features) | set(
        corr.feature_names)

    mm = fit(df, features={"scaling": "minmax", "selection": {"method": "variance"}})
    Xm = mm.transform(df)
    assert Xm.min().min() == pytest.approx(0) and Xm.max().max() == pytest.approx(1)
    assert "const" in mm.dropped_features


@pytest.mark.parametrize("kw, field", [
    ({"clean": {"coerce": {"nope": "float"}}}, "clean.coerce.nope"),
    ({"features": {"derived": [{"name": "d", "expr": "a + missing_col"}]}}, "missing_col"),
    ({"features": {"ratios": [{"name": "r", "numerator": "a", "denominator": "color"}]}},
     "features.ratios.r"),
    ({"features": {"bins": [{"column": "color"}]}}, "features.bins"),
    ({"features": {"derived": [{"name": "a", "expr": "b + 1"}]}}, "already used"),
    ({"clean": {"impute_columns": {"color": {"strategy": "mean"}}}}, "impute_columns.color"),
])
def test_config_that_does_not_fit_the_data_names_the_field(
    ray_address: str, kw: dict[str, Any], field: str,
) -> None:
    with pytest.raises(FeatureConfigError, match=field):
        fit(frame(60), **kw)


def test_a_forbidden_expression_is_refused_with_the_config_naming_it(ray_address: str) -> None:
    """Expressions are checked when the config section is built, before any fit (this case
    was a fit-time FeatureConfigError before they were)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"derived\.0\.expr[\s\S]*derived feature 'd': "
                                              r"Attribute is not allowed"):
        fit(frame(60), features={"derived": [{"name": "d", "expr": "a.__class__"}]})


@pytest.mark.slow  # a whole pipeline run
def test_a_run_with_every_cleaning_option_quarantines_and_predicts_the_same_everywhere(
    ray_address: str, tmp_path: Any,
) -> None:
    """The runner wiring: drop_row / outlier rows quarantined with reasons and counted, a
    scaled pipeline with selection, and the registered model agrees with batch predictions."""
    import mlflow

    from pipelines.runner import run_pipeline
    from pipelines.tracking import tracking_scope
    from tests.conftest import small_config

    cfg = small_config(
        tmp_path, "source.rows=1500", "train.families=[linear]", "train.num_samples=1",
        "evaluate.plots=false", "schema.max_quarantine_fraction=0.2",
        "clean.impute_columns={support_calls: {strategy: drop_row}}",
        "clean.outlier_action=quarantine", "clean.missing_indicators=true",
        "clean.synonyms={plan: {std: standard}}",
        "features.derived=[{name: log_total, expr: 'log1p(max(total_charges, 0))'}]",
        "features.bins=[{column: tenure_months, n_bins: 4}]",
        "features.encoding_columns={region: hashed}", "features.scaling=standard",
        "features.selection={method: correlation, correlation_threshold: 0.98}",
    )
    summary = run_pipeline(cfg, on_stage=lambda *a: None)
    counts = summary.counts
    assert counts["rows_train_dropped_missing"] > 0
    assert counts["rows_train_outliers_quarantined"] > 0
    removed = pd.read_parquet(summary.outputs["quarantine_clean"])
    assert len(removed) == (counts["rows_train_dropped_missing"]
                            + counts["rows_train_outliers_quarantined"])
    assert removed[REASON_COLUMN].str.startswith("clean: ").all()
    with tracking_scope(cfg):  # leaves no MLFLOW_TRACKING_URI behind for later tests
        model = mlflow.pyfunc.load_model(summary.model_uri)
    batch = pd.read_parquet(summary.outputs["test_predictions"])
    raw = batch.drop(columns=[c for c in batch.columns
                              if c.startswith(("prediction", "probability"))
                              or c == "model_version"])
    for c in ("customer_id", "plan", "region", "payment_method"):
        # MLflow reads a missing value of an Arrow-backed text column as the text "<NA>"
        # (see pipelines.model.conform_input); plain objects keep it missing.
        raw[c] = raw[c].astype(object).where(raw[c].notna(), None)
    again = model.predict(raw.drop(columns=[cfg.target]))
    np.testing.assert_array_equal(again["probability"].to_numpy(), batch["probability"].to_numpy())
