"""Training: every family, both parallelism paths, ASHA, and resuming a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.config import TrainConfig
from pipelines.stages.train import LABEL_COLUMN, resolve_parallelism
from tests.integration.train_helpers import sweep, valid_logloss

pytestmark = pytest.mark.integration

FAST = {
    "xgboost": {"num_boost_round": 20, "early_stopping_rounds": 5},
    "mlp": {"max_epochs": 4, "patience": 2, "batch_size": 256},
}


def _cfg(**kw: Any) -> TrainConfig:
    # No refit: these tests compare the saved model with the sweep's validation score.
    data: dict[str, Any] = {"xgboost": FAST["xgboost"], "mlp": FAST["mlp"], "refit": False,
                            **kw}
    return TrainConfig.model_validate(data)


def test_auto_parallelism_follows_num_workers() -> None:
    assert resolve_parallelism(TrainConfig(num_workers=1)) == "in_process"
    assert resolve_parallelism(TrainConfig(num_workers=2)) == "data_parallel"
    assert resolve_parallelism(TrainConfig(parallelism="data_parallel")) == "data_parallel"


def test_sweep_compares_all_families_in_process(splits: tuple[Any, Any], tmp_path: Path) -> None:
    result = sweep(splits, tmp_path, _cfg(families=["xgboost", "mlp", "linear"], num_samples=1))
    assert result.parallelism == "in_process"
    assert sorted(t["family"] for t in result.trials) == ["linear", "mlp", "xgboost"]
    scores = [t["logloss"] for t in result.trials]
    assert result.best_score == pytest.approx(min(scores))
    # The saved model really is the best one: its validation loss is the reported score.
    assert valid_logloss(splits, result.model_dir) == pytest.approx(result.best_score, rel=1e-6)
    assert result.best_score < 0.45  # all learn something; a constant guess scores ~0.43-0.69


@pytest.mark.slow  # a Ray Train worker group per family
@pytest.mark.parametrize("family", ["xgboost", "mlp"])
def test_data_parallel_trial_runs_ray_train_workers(splits: tuple[Any, Any], tmp_path: Path,
                                                    family: str) -> None:
    cfg = _cfg(families=[family], num_samples=1, num_workers=2, cpus_per_worker=0.5)
    result = sweep(splits, tmp_path, cfg)
    assert result.parallelism == "data_parallel" and result.family == family
    assert result.best_score < 0.5
    assert valid_logloss(splits, result.model_dir) < 0.5
    # The Ray Train run left its own run folder under the storage path.
    assert any(p.name.startswith("t-") for p in tmp_path.iterdir())


def test_asha_stops_bad_trials_early(splits: tuple[Any, Any], tmp_path: Path) -> None:
    cfg = _cfg(families=["xgboost"], num_samples=6, scheduler="asha", grace_period=1,
               xgboost={"num_boost_round": 60, "early_stopping_rounds": 60,
                        "search_space": {"eta": {"type": "loguniform", "low": 0.001,
                                                 "high": 0.5}}})
    result = sweep(splits, tmp_path, cfg)
    statuses = [t["status"] for t in result.trials]
    assert "stopped early" in statuses and "finished" in statuses
    assert result.best_score == pytest.approx(
        min(t["logloss"] for t in result.trials if t["status"] == "finished"))


def test_resume_keeps_finished_trials(splits: tuple[Any, Any], tmp_path: Path) -> None:
    cfg = _cfg(families=["linear"], num_samples=2)
    first = sweep(splits, tmp_path, cfg, name="r")
    again = sweep(splits, tmp_path, cfg, name="r", resume=True)
    assert {t["trial_id"] for t in again.trials} == {t["trial_id"] for t in first.trials}
    assert again.best_score == pytest.approx(first.best_score)


def test_one_configuration_fits_without_tune_here_or_in_a_task(
        splits: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One family, one sample, no search space: no Tune experiment. On this single-node Ray
    the fit runs in the driver with its CPUs reserved; elsewhere in a task. Both give the same
    model, whose validation loss is the reported score."""
    import pipelines.stages.train as train_stage

    cfg = _cfg(families=["xgboost"], num_samples=1, cpus_per_worker=1,
               xgboost={**FAST["xgboost"], "search_space": {}, "params": {"max_depth": 3}})
    here = sweep(splits, tmp_path / "here", cfg)
    monkeypatch.setattr(train_stage, "_local_cpus_request", lambda cfg: None)
    task = sweep(splits, tmp_path / "task", cfg)
    assert [t["ran_in"] for t in here.trials] == ["driver"]
    assert [t["ran_in"] for t in task.trials] == ["task"]
    assert here.experiment_path == "" and not any((tmp_path / "here").glob("t*"))
    assert here.best_score == task.best_score and here.best_iteration == task.best_iteration
    assert (here.model_dir / "model.ubj").read_bytes() == (task.model_dir / "model.ubj").read_bytes()
    assert valid_logloss(splits, here.model_dir) == pytest.approx(here.best_score, rel=1e-6)
    import ray

    # The reservation is given back: the cluster's CPUs are all free again.
    assert not [g for g in ray.util.placement_group_table().values()
                if g.get("state") == "CREATED"]


def test_dataset_arrays_match_the_pandas_route(splits: tuple[Any, Any]) -> None:
    """The Arrow conversion gives the rows, columns and labels pandas gives, in canonical order."""
    from pipelines.stages.train import _dataset_arrays, canonical_order

    df = splits[0].to_pandas()
    x = df.drop(columns=[LABEL_COLUMN]).to_numpy(dtype=np.float64)
    y = df[LABEL_COLUMN].to_numpy()
    data = _dataset_arrays(splits[0], threads=2)
    assert data.feature_names == [c for c in df.columns if c != LABEL_COLUMN]
    assert data.X.flags.c_contiguous and data.X.shape == x.shape
    order = canonical_order(x, y)
    np.testing.assert_array_equal(data.X, x[order])
    np.testing.assert_array_equal(data.y, y[order])


@pytest.mark.slow  # two sweeps per search (12-19 s each); the full suite runs them
@pytest.mark.parametrize("search", ["random", "optuna"])
def test_a_seeded_sweep_is_reproducible(splits: tuple[Any, Any], tmp_path: Path,
                                        search: str) -> None:
    """The same seed and budget give the same trials, in order, with the same scores (TPE:
    exactly so with one trial at a time). Every trial keeps its per-round curve."""
    cfg = _cfg(families=["xgboost", "linear"], num_samples=3, search=search,
               max_concurrent_trials=1, seed=7,
               # No early stopping: every xgboost trial reports rounds 10 and 20.
               xgboost={"num_boost_round": 20, "early_stopping_rounds": 20})
    first, again = sweep(splits, tmp_path, cfg, name="a"), sweep(splits, tmp_path, cfg, name="b")

    def trials(result: Any) -> list[tuple[Any, ...]]:
        return [(t["family"], t["params"], t["logloss"]) for t in result.trials]

    assert trials(first) == trials(again)
    assert sorted(t["family"] for t in first.trials) == ["linear"] * 3 + ["xgboost"] * 3
    assert len({str(t["params"]) for t in first.trials}) == 6  # sampled, not one point
    assert first.best_score == again.best_score
    for t in first.trials:
        rounds = [r for r, _ in t["curve"]]
        assert rounds == ([1] if t["family"] == "linear" else [10, 20]), t
    other = sweep(splits, tmp_path, cfg.model_copy(update={"seed": 8}), name="c")
    assert trials(other) != trials(first)


@pytest.mark.slow  # an interrupted sweep and its resumption (11 s)
def test_an_interrupted_tpe_sweep_resumes_its_search(splits: tuple[Any, Any],
                                                     tmp_path: Path) -> None:
    """Optuna search, one trial at a time; the first trial is interrupted (fails). Resuming
    runs it again with the configuration it had, keeps the finished trials as they were, adds
    no trial, and the searcher it continues with is the one the first run saved."""
    from pipelines.families.registry import register_family
    from pipelines.stages.search import PerFamilySearcher
    from tests.integration.train_helpers import InterruptedOnce

    marker = tmp_path / "interrupt"
    marker.touch()
    register_family(InterruptedOnce(marker), replace=True)
    cfg = _cfg(families=["interrupted_once"], num_samples=3, search="optuna",
               max_concurrent_trials=1, max_failures=0,
               interrupted_once={"search_space": {"C": {"type": "loguniform", "low": 0.01,
                                                        "high": 10.0}}})
    first = sweep(splits, tmp_path / "store", cfg, name="r")
    assert [t["status"] for t in first.trials] == ["error", "finished", "finished"]
    again = sweep(splits, tmp_path / "store", cfg, name="r", resume=True)
    assert [t["status"] for t in again.trials] == ["finished"] * 3
    before = {t["trial_id"]: t for t in first.trials}
    after = {t["trial_id"]: t for t in again.trials}
    assert set(after) == set(before)
    assert all(after[i]["params"] == t["params"] for i, t in before.items())
    assert all(after[i]["logloss"] == t["logloss"] for i, t in before.items()
               if t["status"] == "finished")
    # The resumed session saved the searcher it restored: it knows all three trials.
    saved = max((tmp_path / "store" / "r").glob("searcher-state-*.pkl"),
                key=lambda p: p.stat().st_mtime)
    searcher = PerFamilySearcher({}, "logloss", "min")
    searcher.restore(str(saved))
    assert sorted(searcher._family_of) == sorted(t["trial_id"] for t in first.trials)


def test_a_small_refit_in_the_driver_gives_the_task_s_model(splits: tuple[Any, Any],
                                                             tmp_path: Path) -> None:
    """The refit runs in the driver (no worker start-up) for small data and on a one-node
    cluster: same bytes as the refit task, which larger data sets on a cluster still use."""
    from pipelines.families.xgb import XGBoostFamily
    from pipelines.stages.train import TrainContext, _refit

    context = TrainContext(
        task="binary", num_classes=2, metric="logloss", seed=0, threads=1, use_gpu=False,
        num_workers=1, cpus_per_worker=1.0, storage_path=str(tmp_path), run_name="refit",
        max_failures=0, families={"xgboost": XGBoostFamily()}, fixed={"xgboost": {}},
        settings={"xgboost": {**FAST["xgboost"], "prescaled": False}}, cv_folds=1,
        cv_max_rows=0)
    train, valid = splits
    args = (train, valid, context, "xgboost", {"eta": 0.3, "max_depth": 4}, 12, 1.0)
    here, there = _refit(*args, in_driver=True), _refit(*args, in_driver=False)
    files = sorted(p.name for p in here.iterdir())
    assert files == sorted(p.name for p in there.iterdir()) and files
    for name in files:
        assert (here / name).read_bytes() == (there / name).read_bytes(), name


def test_the_shared_test_instance_is_one_node_that_runs_the_refit_in_the_driver(
        ray_address: str) -> None:
    from pipelines.stages.train import _driver_node_is_the_cluster

    assert _driver_node_is_the_cluster()


def _thread_invariant_families() -> list[str]:
    from pipelines.families.registry import BUILTIN_FAMILIES, get_family

    return [name for name in BUILTIN_FAMILIES if get_family(name).thread_invariant]


def test_only_xgboost_claims_a_thread_invariant_fit() -> None:
    # The claim lets the refit take a whole node; torch's and BLAS's kernels make no promise.
    assert _thread_invariant_families() == ["xgboost"]


@pytest.mark.parametrize("family", _thread_invariant_families())
def test_the_refit_model_does_not_depend_on_the_thread_count(splits: tuple[Any, Any],
                                                             family: str) -> None:
    """The refit of a ``thread_invariant`` family takes every CPU of the largest node; that is
    only allowed if its fit gives the same model bytes for any thread count, otherwise the
    model would depend on the cluster and not only on code, data, config and seed."""
    from pipelines.families.registry import get_family
    from pipelines.stages.train import TrainContext, _refit_task

    def fit(threads: int) -> dict[str, bytes]:
        context = TrainContext(
            task="binary", num_classes=2, metric="logloss", seed=3, threads=threads,
            use_gpu=False, num_workers=1, cpus_per_worker=1.0, storage_path="unused",
            run_name="refit", max_failures=0, families={family: get_family(family)},
            fixed={family: {}}, settings={family: {**FAST[family], "prescaled": False}},
            cv_folds=1, cv_max_rows=0)
        params = {"eta": 0.3, "max_depth": 5, "subsample": 0.7, "colsample_bytree": 0.8}
        return _refit_task(*splits, context, family, params, 15)

    one = fit(1)
    assert one and one == fit(2) == fit(4)


@pytest.mark.parametrize(("family", "threads"), [("xgboost", 2), ("mlp", 1)])
def test_the_refit_takes_the_node_s_cpus_only_for_a_thread_invariant_family(
        splits: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        family: str, threads: int) -> None:
    from pipelines.families.registry import get_family
    from pipelines.stages import train

    seen: list[int] = []

    def record(*args: Any) -> dict[str, bytes]:
        seen.append(args[2].threads)
        return {"model.bin": b"m"}

    monkeypatch.setattr(train, "_refit_task", record)
    monkeypatch.setattr(train, "_largest_node_cpus", lambda: 2)
    context = train.TrainContext(
        task="binary", num_classes=2, metric="logloss", seed=3, threads=1, use_gpu=False,
        num_workers=1, cpus_per_worker=1.0, storage_path=str(tmp_path), run_name="refit",
        max_failures=0, families={family: get_family(family)}, fixed={family: {}},
        settings={family: FAST[family]}, cv_folds=1, cv_max_rows=0)
    train._refit(*splits, context, family, {}, 3, 1.0)
    assert seen == [threads]
