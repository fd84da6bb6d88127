"""The model in its family's own MLflow flavour (``tracking.log_native_model``), without Ray.

Each family fits on the features of the model tests' hand-built feature pipeline; its native
model is logged to a SQLite store and loaded back in a plain Python process that cannot
import raypipe, by the flavour's ``load_model`` and by ``mlflow.pyfunc.load_model``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import tracking
from pipelines.config import load_config
from pipelines.families import FitContext, TrainData, get_family
from pipelines.families.registry import write_family_marker
from pipelines.model.engine import columns_to_frame
from pipelines.model.spec import ModelSpec, conform_input
from tests.native_helpers import predict_without_raypipe
from tests.unit.model.helpers import make_pipeline, random_columns

# Every test here shares one fixture that fits and logs 9 native models and starts a plain
# process to load them (~30 s): the full suite runs them, the inner lane does not.
pytestmark = pytest.mark.slow

CASES = [(f, t) for f in ("xgboost", "linear", "mlp") for t in ("binary", "multiclass", "regression")]
SETTINGS = {"xgboost": {"num_boost_round": 10}, "mlp": {"max_epochs": 3, "batch_size": 64},
            "linear": {}}

def _fit(family: str, task: str, model_dir: Path) -> tuple[ModelSpec, pd.DataFrame, np.ndarray]:
    pipe = make_pipeline(task)
    spec = ModelSpec(pipeline=pipe, name="unit", family=family)
    raw = columns_to_frame(random_columns(300, seed=1), spec)
    X = pipe.transform(raw).to_numpy(np.float64)
    rng = np.random.default_rng(0)
    y = {"binary": (X[:, 0] > np.nanmedian(X[:, 0])).astype(float),
         "multiclass": rng.integers(0, 3, len(X)).astype(float),
         "regression": np.nan_to_num(X[:, 0]) + rng.normal(size=len(X))}[task]
    data = TrainData(X, y, pipe.feature_names)
    fam = get_family(family)
    metric = "rmse" if task == "regression" else "logloss"
    ctx = FitContext(task=task, num_classes=3 if task == "multiclass" else 2, metric=metric,
                     report=lambda _: None, settings=SETTINGS[family])
    model_dir.mkdir()
    fam.save(fam.fit({}, data, data, ctx).model, model_dir)
    write_family_marker(model_dir, fam)
    return spec, raw, X


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every family on every task: its native model's URI, featurised rows and predict_raw."""
    import mlflow

    root = tmp_path_factory.mktemp("native")
    cfg = load_config(None, [f"runtime.work_dir={root}"])  # tracks to a SQLite file in root
    with tracking.tracking_scope(cfg) as exp, mlflow.start_run(experiment_id=exp):
        cases: dict[str, Any] = {}
        for family, task in CASES:
            name = f"{family}-{task}"
            spec, raw, X = _fit(family, task, root / name)
            model_uri = tracking.log_native_model(spec, root / name,
                                                  conform_input(raw.head(5), spec))
            np.save(root / f"{name}.npy", X)
            expected = get_family(family).load(root / name).predict_raw(X)
            cases[name] = {"uri": model_uri, "features": str(root / f"{name}.npy"),
                           "expected": expected, "family": family, "task": task}
        yield {"root": root, "tracking_uri": cfg.tracking_uri, "cases": cases,
               "experiment": exp}


@pytest.fixture(scope="module")
def loaded_elsewhere(logged: dict[str, Any]) -> dict[str, Any]:
    """What a plain process, which cannot import raypipe, predicts with each native model."""
    flavours = {"xgboost": "xgboost", "linear": "sklearn", "mlp": "pytorch"}
    return predict_without_raypipe(
        [{"name": name, "uri": c["uri"], "features": c["features"],
          "flavour": flavours[c["family"]]} for name, c in logged["cases"].items()],
        logged["root"], logged["tracking_uri"])


@pytest.mark.parametrize(("family", "task"), CASES)
def test_native_model_loads_without_raypipe_and_predicts_like_the_family(
        logged: dict[str, Any], loaded_elsewhere: dict[str, Any], family: str, task: str) -> None:
    case = logged["cases"][f"{family}-{task}"]
    native, via_pyfunc = (np.asarray(v) for v in loaded_elsewhere[f"{family}-{task}"])
    expected = case["expected"]
    if family == "linear" and task == "binary":  # predict_proba: one column per class
        native, via_pyfunc = native[:, 1], via_pyfunc[:, 1]
    via_pyfunc = via_pyfunc.reshape(expected.shape)
    if family == "xgboost":  # the booster itself: to the bit
        np.testing.assert_array_equal(native, expected)
        np.testing.assert_array_equal(via_pyfunc, expected)
        return
    # sklearn takes X @ coef.T by BLAS where the family sums row by row; the exported torch
    # graph runs its own float32 kernels (seen: one value of 300 one float32 ulp apart).
    tolerance = {"linear": 1e-12, "mlp": 1e-6}[family]
    np.testing.assert_allclose(native, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(via_pyfunc, expected, rtol=tolerance, atol=tolerance)


def test_native_model_carries_the_feature_pipeline_as_json(logged: dict[str, Any]) -> None:
    import mlflow
    from mlflow.models import get_model_info

    case = logged["cases"]["xgboost-binary"]
    local = Path(mlflow.artifacts.download_artifacts(case["uri"]))
    saved = json.loads((local / "feature_pipeline.json").read_text())
    pipe = make_pipeline("binary")
    assert saved["feature_names"] == pipe.feature_names
    assert saved == pipe.model_dump(mode="json")
    info = get_model_info(case["uri"])
    assert info.metadata["raypipe.feature_names"] == pipe.feature_names
    assert {"xgboost", "python_function"} <= set(info.flavors)
    assert info.signature.inputs.input_names() == pipe.feature_names


def test_a_family_without_a_native_flavour_logs_nothing(logged: dict[str, Any],
                                                       tmp_path: Path) -> None:
    import mlflow

    from tests.toy_family import CentroidFamily

    spec, raw, X = _fit("linear", "binary", tmp_path / "linear")
    fam = CentroidFamily()
    model_dir = tmp_path / "centroid"
    model_dir.mkdir()
    y = (X[:, 0] > np.nanmedian(X[:, 0])).astype(float)
    data = TrainData(np.nan_to_num(X), y, spec.pipeline.feature_names)
    ctx = FitContext(task="binary", num_classes=2, metric="logloss", report=lambda _: None)
    fam.save(fam.fit({}, data, data, ctx).model, model_dir)
    write_family_marker(model_dir, fam)
    experiments = [logged["experiment"]]
    before = len(mlflow.search_logged_models(experiment_ids=experiments, output_format="list"))
    assert tracking.log_native_model(spec, model_dir, raw.head(5)) is None
    after = mlflow.search_logged_models(experiment_ids=experiments, output_format="list")
    assert len(after) == before == len(CASES)
