"""Stage caching through the runner: unchanged stages are reused, changed ones re-run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines import tracking
from pipelines.runner import STAGES, MissingStageError, RunSummary, run_pipeline
from tests.conftest import small_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # runs whole pipelines or fault-injected fits

FAST = ["train.num_samples=2", "train.xgboost.num_boost_round=20", "evaluate.plots=false"]


def _manifests(work: Path) -> dict[str, float]:
    """Cache entry -> mtime of its manifest (rewritten whenever the stage is recomputed)."""
    return {str(p.parent.relative_to(work)): p.stat().st_mtime
            for p in work.glob("cache/*/*/*/_raypipe_stage.json")}


def _versions(summary: RunSummary, work: Path) -> list[str]:
    cfg = small_config(work, *FAST)
    with tracking.tracking_scope(cfg):
        return sorted(str(mv.version) for mv in MlflowClient().search_model_versions(
            f"name = '{summary.name}'"))


@pytest.fixture(scope="module")
def first(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary]:
    work = tmp_path_factory.mktemp("cached")
    return work, run_pipeline(small_config(work, *FAST))


def test_first_run_computes_every_stage(first: tuple[Path, RunSummary]) -> None:
    work, summary = first
    assert summary.reused_stages == []
    cached = {k.split("/")[2] for k in _manifests(work)}
    assert cached == set(STAGES) - {"ingest", "gate"}


def test_unchanged_rerun_reuses_every_stage_and_registers_nothing(
        first: tuple[Path, RunSummary]) -> None:
    work, summary = first
    before = _manifests(work)
    connects: list[str] = []
    again = run_pipeline(small_config(work, *FAST), connect=lambda: connects.append("ray"))
    assert again.reused_stages == [s for s in STAGES if s != "ingest"]
    assert connects == []  # nothing to compute: Ray is never asked for
    assert _manifests(work) == before  # nothing rewritten
    assert again.metrics == summary.metrics
    assert again.counts == summary.counts
    assert again.model_version == summary.model_version  # no second registration
    assert _versions(summary, work) == [summary.model_version]
    assert "already registered" in again.gate_reason


def test_changing_a_hyperparameter_reruns_training_and_what_follows(
        first: tuple[Path, RunSummary]) -> None:
    work, _ = first
    connects: list[str] = []
    changed = run_pipeline(small_config(work, *FAST, "train.xgboost.num_boost_round=21"),
                           connect=lambda: connects.append("ray"))
    assert connects == ["ray"]  # once, before the first stage that computes
    assert changed.reused_stages == ["validate", "split", "features"]
    assert changed.stage_seconds["train"] > 0


def test_only_runs_one_stage_on_cached_inputs(first: tuple[Path, RunSummary]) -> None:
    work, _ = first
    before = _manifests(work)
    partial = run_pipeline(small_config(work, *FAST), only="features")
    assert partial.reused_stages == ["validate", "split"]
    assert list(partial.stage_seconds) == ["ingest", "validate", "split", "features"]
    after = _manifests(work)
    rewritten = {k for k in after if after[k] != before.get(k)}
    assert [k.split("/")[2] for k in rewritten] == ["features"]


def test_only_without_cached_inputs_names_the_missing_stage(ray_address: str,
                                                            tmp_path: Path) -> None:
    with pytest.raises(MissingStageError, match="stage 'validate'"):
        run_pipeline(small_config(tmp_path, *FAST), only="split")


def test_from_recomputes_that_stage_and_later_ones(first: tuple[Path, RunSummary]) -> None:
    work, _ = first
    redone = run_pipeline(small_config(work, *FAST), from_stage="batch")
    assert redone.reused_stages == ["validate", "split", "features", "train", "register"]
    assert redone.counts["rows_predicted"] == redone.counts["rows_test"]
