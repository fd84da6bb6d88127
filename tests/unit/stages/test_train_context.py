"""The sweep's shared context: one typed object that every trial, task and worker receives."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, replace

import pytest

from pipelines.families.xgb import XGBoostFamily
from pipelines.stages.train import TrainContext


def _context() -> TrainContext:
    return TrainContext(
        task="binary", num_classes=2, metric="roc_auc", seed=3, threads=2, use_gpu=False,
        num_workers=1, cpus_per_worker=2.0, storage_path="/tmp/sweeps", run_name="churn-abc",
        max_failures=1, families={"xgboost": XGBoostFamily()}, fixed={"xgboost": {"max_depth": 4}},
        settings={"xgboost": {"num_boost_round": 50, "prescaled": False}},
        cv_folds=3, cv_max_rows=10_000,
    )


def test_it_pickles_unchanged_for_ray() -> None:
    context = _context()
    assert pickle.loads(pickle.dumps(context)) == context


def test_it_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        _context().seed = 4  # type: ignore[misc]


def test_a_fit_context_takes_the_family_settings() -> None:
    reports: list[dict[str, float]] = []
    ctx = _context().fit_context("xgboost", reports.append)
    assert (ctx.task, ctx.num_classes, ctx.metric, ctx.seed, ctx.threads, ctx.use_gpu) == \
        ("binary", 2, "roc_auc", 3, 2, False)
    assert ctx.settings == {"num_boost_round": 50, "prescaled": False}
    ctx.report({"roc_auc": 0.5})
    assert reports == [{"roc_auc": 0.5}]
    refit = replace(_context(), settings={"xgboost": {"num_boost_round": 7}})
    assert refit.fit_context("xgboost", reports.append).settings == {"num_boost_round": 7}


def test_the_final_report_keys_are_those_the_sweep_reads() -> None:
    report = _context().final_report("xgboost", 0.9, 40, {"eta": 0.1}, 1.5)
    assert report == {"roc_auc": 0.9, "iterations": 40, "family": "xgboost", "final": 1,
                      "params": {"eta": 0.1}, "fit_seconds": 1.5}


@pytest.mark.parametrize(("rows", "use_gpu", "alone", "expected"), [
    (10_000, False, False, True),        # small: no worker start-up for a sub-second fit
    (5_000_000, False, False, False),    # large, several nodes: on a worker, not the head
    (5_000_000, False, True, True),      # large, one node that is the driver's: same node
    (10_000, True, True, False),         # a GPU is a Ray resource: always a task
])
def test_where_the_refit_runs(rows: int, use_gpu: bool, alone: bool, expected: bool) -> None:
    from pipelines.stages.train import refit_in_driver

    assert refit_in_driver(rows, use_gpu, alone) is expected
