"""The stage cache and the stage plan, without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cache import MANIFEST, StageCache, code_version, stage_key
from pipelines.runner import STAGES, plan_stages


def test_key_is_stable_and_sensitive_to_every_part() -> None:
    base = stage_key("train", {"num_samples": 4, "seed": 0}, "abc")
    assert base == stage_key("train", {"seed": 0, "num_samples": 4}, "abc")  # key order free
    assert base != stage_key("train", {"num_samples": 5, "seed": 0}, "abc")
    assert base != stage_key("train", {"num_samples": 4, "seed": 0}, "abd")
    assert base != stage_key("split", {"num_samples": 4, "seed": 0}, "abc")


def test_code_version_hashes_the_package_sources() -> None:
    v = code_version()
    assert len(v) == 64 and v == code_version()


def test_entry_without_manifest_is_not_finished(tmp_path: Path) -> None:
    entry = StageCache(tmp_path).entry("split", stage_key("x"))
    assert entry.load() is None
    entry.reset()
    (entry.path / "part.parquet").write_text("half written")
    assert entry.load() is None  # outputs without a manifest: an interrupted stage


def test_commit_then_load_round_trips_and_reset_wipes(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    entry = cache.entry("features", stage_key("y"))
    entry.reset()
    (entry.path / "leftover").write_text("x")
    entry.commit({"counts": {"rows": 3}})
    again = cache.entry("features", stage_key("y"))
    assert again.load() == {"stage": "features", "key": stage_key("y"), "counts": {"rows": 3}}
    assert not list(entry.path.glob(".*.tmp"))  # the manifest was renamed into place
    again.reset()
    assert again.load() is None and list(again.path.iterdir()) == []


def test_unreadable_manifest_counts_as_missing(tmp_path: Path) -> None:
    entry = StageCache(tmp_path).entry("train", stage_key("z"))
    entry.reset()
    (entry.path / MANIFEST).write_text("{not json")
    assert entry.load() is None
    (entry.path / MANIFEST).write_text(json.dumps({"ok": 1}))
    assert entry.load() == {"ok": 1}


def test_plan_default_runs_everything_and_forces_nothing() -> None:
    assert plan_stages() == (STAGES, set())


def test_plan_from_forces_that_stage_and_later_ones() -> None:
    stages, forced = plan_stages(from_stage="train")
    assert stages == STAGES
    assert forced == set(STAGES[STAGES.index("train"):])


def test_plan_only_stops_after_that_stage() -> None:
    stages, forced = plan_stages(only="features")
    assert stages == STAGES[: STAGES.index("features") + 1]
    assert forced == {"features"}


@pytest.mark.parametrize(("kw", "message"), [
    ({"from_stage": "fit"}, "--from 'fit' is not a stage"),
    ({"only": "nope"}, "--only 'nope' is not a stage"),
    ({"from_stage": "train", "only": "train"}, "not both"),
])
def test_plan_rejects_unknown_stages_by_name(kw: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_stages(**kw)
