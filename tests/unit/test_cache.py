"""The stage cache and the stage plan, without Ray."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelines.cache import MANIFEST, StageCache, code_version, stage_key
from pipelines.runner import STAGES, plan_stages
from pipelines.storage import StoragePath


def test_key_is_stable_and_sensitive_to_every_part() -> None:
    base = stage_key("train", {"num_samples": 4, "seed": 0}, "abc")
    assert base == stage_key("train", {"seed": 0, "num_samples": 4}, "abc")  # key order free
    assert base != stage_key("train", {"num_samples": 5, "seed": 0}, "abc")
    assert base != stage_key("train", {"num_samples": 4, "seed": 0}, "abd")
    assert base != stage_key("split", {"num_samples": 4, "seed": 0}, "abc")


def test_code_version_hashes_the_package_sources() -> None:
    v = code_version()
    assert len(v) == 64 and v == code_version()


# The entry tests run on local disk and on the S3 server (``store_root``): an object store
# has no rename, so "finished" must mean the same there without one.


def test_entry_without_manifest_is_not_finished(store_root: StoragePath) -> None:
    entry = StageCache(store_root).entry("split", stage_key("x"))
    assert entry.load() is None
    entry.reset()
    (entry.path / "part.parquet").write_text("half written")
    assert entry.load() is None  # outputs without a manifest: an interrupted stage


def test_interrupted_stage_leaves_no_finished_marker(store_root: StoragePath) -> None:
    """A stage that dies half way (here: raises between two writes) is never taken as done,
    and its leftovers are wiped before the next attempt."""
    cache = StageCache(store_root)
    entry = cache.entry("train", stage_key("crash"))

    def compute() -> None:
        entry.reset()
        (entry.path / "model" / "part-0").write_bytes(b"half")
        raise KeyboardInterrupt("driver killed")

    with pytest.raises(KeyboardInterrupt):
        compute()
    again = cache.entry("train", stage_key("crash"))
    assert again.load() is None and not again.manifest.exists()
    again.reset()
    assert again.path.files() == {}


def test_commit_then_load_round_trips_and_reset_wipes(store_root: StoragePath) -> None:
    cache = StageCache(store_root)
    entry = cache.entry("features", stage_key("y"))
    entry.reset()
    (entry.path / "leftover").write_text("x")
    entry.commit({"counts": {"rows": 3}})
    again = cache.entry("features", stage_key("y"))
    assert again.load() == {"stage": "features", "key": stage_key("y"), "counts": {"rows": 3}}
    assert set(entry.path.files()) == {"leftover", MANIFEST}  # no temporary file left over
    again.reset()
    assert again.load() is None and again.path.files() == {}


def test_an_entry_that_lost_files_is_recomputed(store_root: StoragePath) -> None:
    """The manifest lists every output with its size: a partial copy or an expired object
    turns a finished entry back into a missing one."""
    entry = StageCache(store_root).entry("split", stage_key("lost"))
    entry.reset()
    (entry.path / "train" / "0.parquet").write_bytes(b"12345")
    (entry.path / "test" / "0.parquet").write_bytes(b"123")
    entry.commit({"ok": 1})
    assert entry.load() == {"stage": "split", "key": stage_key("lost"), "ok": 1}
    (entry.path / "test" / "0.parquet").unlink()
    assert entry.load() is None
    (entry.path / "test" / "0.parquet").write_bytes(b"1234")  # same name, other content
    assert entry.load() is None


def test_unreadable_manifest_counts_as_missing(store_root: StoragePath) -> None:
    entry = StageCache(store_root).entry("train", stage_key("z"))
    entry.reset()
    (entry.path / MANIFEST).write_text("{not json")
    assert entry.load() is None
    (entry.path / MANIFEST).write_text(json.dumps({"ok": 1}))
    assert entry.load() == {"ok": 1}


def test_plan_default_runs_everything_and_forces_nothing() -> None:
    assert plan_stages() == (STAGES, set())
    assert plan_stages(no_cache=True) == (STAGES, set(STAGES))


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
    # it said "use --from or --only, not both" to a user who had given --no-cache --only
    ({"only": "validate", "no_cache": True}, "--no-cache recomputes every stage"),
    ({"from_stage": "train", "no_cache": True}, "--no-cache recomputes every stage"),
])
def test_plan_rejects_unknown_stages_by_name(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_stages(**kw)
