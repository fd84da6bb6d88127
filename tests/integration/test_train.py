"""Both training paths: in-process trials and data-parallel Ray Train trials."""

from __future__ import annotations

from pathlib import Path

import pytest
import xgboost

from pipelines.config import TrainConfig
from pipelines.features import fit_feature_pipeline
from pipelines.stages.ingest import read_source
from pipelines.stages.train import featurize, resolve_parallelism, tune_xgboost
from tests.conftest import small_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def splits(ray_address: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    cfg = small_config(tmp_path_factory.mktemp("train"), "source.rows=1500")
    raw = read_source(cfg.source, cfg.work_dir).filter(expr="tenure_months >= 0")
    train, valid = raw.split_proportionately([0.7])
    pipe = fit_feature_pipeline(train, target="churned", task="binary", clean=cfg.clean,
                                features=cfg.features)
    return featurize(train, pipe), featurize(valid, pipe), cfg


def test_auto_parallelism_follows_num_workers() -> None:
    assert resolve_parallelism(TrainConfig(num_workers=1)) == "in_process"
    assert resolve_parallelism(TrainConfig(num_workers=2)) == "data_parallel"
    assert resolve_parallelism(TrainConfig(num_workers=1, parallelism="data_parallel")) == (
        "data_parallel"
    )


def _sweep(splits, tmp_path: Path, **train_kw):  # type: ignore[no-untyped-def]
    train, valid, cfg = splits
    tcfg = cfg.train.model_copy(update={"num_boost_round": 20, "early_stopping_rounds": 5,
                                        **train_kw})
    return tune_xgboost(train, valid, tcfg, task="binary", num_classes=2,
                        storage_path=str(tmp_path), run_name="t")


def test_in_process_sweep_returns_best_of_all_trials(splits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = _sweep(splits, tmp_path, num_samples=3)
    assert result.parallelism == "in_process"
    assert len(result.trials) == 3
    scores = [t["logloss"] for t in result.trials]
    assert result.best_score == pytest.approx(min(scores))
    booster = xgboost.Booster(model_file=str(result.booster_path))
    assert booster.num_boosted_rounds() == result.best_iteration + 1


def test_data_parallel_sweep_runs_ray_train_workers(splits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = _sweep(splits, tmp_path, num_samples=1, num_workers=2, cpus_per_worker=0.5)
    assert result.parallelism == "data_parallel"
    assert result.best_score < 0.69  # better than a constant guess
    assert xgboost.Booster(model_file=str(result.booster_path)).num_boosted_rounds() > 0
    # The Ray Train run left its own run folder under the storage path.
    assert any(p.name.startswith("t-") for p in tmp_path.iterdir())
