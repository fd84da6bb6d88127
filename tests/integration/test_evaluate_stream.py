"""Evaluation on Ray Data: streamed over batches, equal to the pandas evaluation of the frame,
and bounded in memory on a data set three times the object store's size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import ray

from pipelines.stages.evaluate import evaluate_frame, evaluate_predictions
from tests.evaluation_helpers import assert_same_evaluation
from tests.integration.own_ray import run_with_own_ray

pytestmark = pytest.mark.integration


def _predictions(task: str, n: int = 30_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "plan": rng.choice(np.array(["basic", "pro", None], dtype=object), n, p=[.6, .39, .01]),
        "tenure": rng.integers(0, 72, n),
    })
    if task == "regression":
        y = rng.normal(50, 10, n)
        return frame.assign(y=y, prediction=y + rng.normal(size=n))
    if task == "binary":
        p = rng.random(n)
        y = (rng.random(n) < p).astype(float)
        y[::97] = np.nan
        return frame.assign(y=y, prediction=(p >= 0.5).astype(int), probability=p)
    proba = rng.dirichlet([2, 1, 1], n)
    classes = np.array(["a", "b", "c"])
    frame = frame.assign(y=classes[rng.choice(3, n)], prediction=classes[proba.argmax(axis=1)],
                         probability=proba.max(axis=1))
    for i, c in enumerate(classes):
        frame[f"probability_{c}"] = proba[:, i]
    return frame


CLASSES = {"binary": [0, 1], "multiclass": ["a", "b", "c"], "regression": None}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_evaluate_predictions_equals_evaluate_frame(ray_address: str, tmp_path: Path,
                                                    task: str) -> None:
    frame = _predictions(task)
    blocks = [frame.iloc[i:i + 4000] for i in range(0, len(frame), 4000)]
    ds = ray.data.from_pandas(blocks).randomize_block_order(seed=3)
    kw: dict[str, Any] = {"target": "y", "task": task, "classes": CLASSES[task],
                          "slices": ["plan", "tenure"]}
    streamed = evaluate_predictions(ds, plot_dir=tmp_path / "stream", **kw)
    whole = evaluate_frame(frame, plot_dir=tmp_path / "frame", **kw)
    assert_same_evaluation(streamed, whole)
    assert [p.name for p in streamed.plots] == [p.name for p in whole.plots]
    assert all((tmp_path / "stream" / p.name).stat().st_size > 1000 for p in streamed.plots)
    assert next(iter(streamed.slices["tenure"])).startswith("[0")  # cut into quartiles


def test_evaluate_predictions_is_the_same_on_every_run(ray_address: str) -> None:
    frame = _predictions("binary")
    kw: dict[str, Any] = {"target": "y", "task": "binary", "classes": [0, 1], "slices": ["plan"]}
    runs = [evaluate_predictions(
        ray.data.from_pandas([frame.iloc[i:i + size] for i in range(0, len(frame), size)])
        .randomize_block_order(seed=seed), **kw)
        for size, seed in ((3000, 1), (7000, 2))]
    assert json.dumps(runs[0].metrics) == json.dumps(runs[1].metrics)
    assert json.dumps(runs[0].slices) == json.dumps(runs[1].slices)


def test_evaluate_predictions_names_missing_columns(ray_address: str) -> None:
    ds = ray.data.from_pandas(_predictions("binary", 100).drop(columns=["probability"]))
    with pytest.raises(ValueError, match="probability"):
        evaluate_predictions(ds, target="y", task="binary", classes=[0, 1])
    with pytest.raises(ValueError, match="region"):
        evaluate_predictions(ds, target="y", task="binary", classes=[0, 1], slices=["region"])


@pytest.mark.slow
def test_evaluation_streams_three_times_the_object_store(tmp_path: Path) -> None:
    """8M prediction rows (~290 MB in memory) under an 80 MB object store, in a Ray of its own:
    evaluation finishes (spilling allowed) and its metrics equal a pandas computation."""
    result = run_with_own_ray("tests.integration.evaluate_at_scale", tmp_path, timeout=240)
    assert result["data_bytes"] >= 3 * result["store_bytes"]
    expected, metrics = result["expected"], result["metrics"]
    assert sum(map(sum, result["confusion"])) == expected["rows"]
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)
    assert metrics["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-12)
    assert metrics["roc_auc"] == pytest.approx(expected["roc_auc"], rel=1e-12)
    assert sum(s["rows"] for s in result["slices"]["plan"].values()) == expected["rows"]
    assert len(result["plots"]) == 3
