"""Same code, data, config and seed give the same pipeline, model and reports, every run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import SMALL_RUN
from tests.e2e.cli_helpers import raypipe

pytestmark = pytest.mark.e2e

# Run records that name the run itself (Tune's trial ids, wall times) are left out; everything
# the model and the reports are made of is compared byte for byte.
_COMPARED = ("feature_pipeline.json", "model.ubj", "family.json", "quality_report.json",
             "quality_report.html", "training_profile.json")


def _entries(work: Path) -> list[Path]:
    return [p.parent for p in (work / "cache").glob("*/*/*/_raypipe_stage.json")]


def _digests(entries: list[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        for path in sorted(entry.rglob("*")):
            if path.is_file() and path.name in _COMPARED:
                key = f"{entry.parent.name}/{path.name}"
                assert key not in out, f"two {key} in one run"
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_a_no_cache_rerun_gives_identical_pipeline_model_and_reports(
        trained: dict[str, Any], tmp_path: Path) -> None:
    """The session's pipeline run, then the same config again through ``raypipe run
    --no-cache`` in a fresh folder: the fitted feature pipeline JSON, the model's bytes and
    the data-quality and training-profile reports, the evaluation and the test predictions
    are identical."""
    # The session run's own stage folders: other tests run other configs into its work dir.
    first = _digests(trained["entries"])
    assert {k.split("/")[1] for k in first} == set(_COMPARED)
    args = [a for s in SMALL_RUN for a in ("--set", s)]
    r = raypipe("run", "--no-cache", *args, "--set", f"runtime.work_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    second = _digests(_entries(tmp_path))
    assert second == first, sorted(k for k in first if first[k] != second.get(k))
    # The evaluation (metrics, confusion matrix, per-slice metrics) to the byte, and the
    # batch stage's test predictions row for row.
    assert _evaluation(_entries(tmp_path)) == _evaluation(trained["entries"])
    pd.testing.assert_frame_equal(_predictions(_entries(tmp_path)),
                                  _predictions(trained["entries"]), check_exact=True)


def _stage_dir(entries: list[Path], stage: str) -> Path:
    (entry,) = (e for e in entries if e.parent.name == stage)
    return entry


def _evaluation(entries: list[Path]) -> str:
    record = json.loads((_stage_dir(entries, "evaluate") / "_raypipe_stage.json").read_text())
    return json.dumps({k: record[k] for k in ("metrics", "confusion", "slices")},
                      sort_keys=True)


def _predictions(entries: list[Path]) -> pd.DataFrame:
    # Without the column naming the logged model: each run logs its own (m-<id>).
    frame = pd.read_parquet(_stage_dir(entries, "batch") / "test_predictions")
    frame = frame.drop(columns=["model_version"])
    return frame.sort_values(list(frame.columns), ignore_index=True)
