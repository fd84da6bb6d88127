"""Same code, data, config and seed give the same pipeline, model and reports, every run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SMALL_RUN
from tests.e2e.cli_helpers import raypipe

pytestmark = pytest.mark.e2e

# Run records that name the run itself (Tune's trial ids, wall times) are left out; everything
# the model and the reports are made of is compared byte for byte.
_COMPARED = ("feature_pipeline.json", "model.ubj", "family.json", "quality_report.json",
             "quality_report.html", "training_profile.json")


def _digests(work: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted((work / "cache").rglob("*")):
        if path.is_file() and path.name in _COMPARED:
            stage = path.relative_to(work / "cache").parts[1]
            out[f"{stage}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_a_no_cache_rerun_gives_identical_pipeline_model_and_reports(
        trained: dict[str, Any], tmp_path: Path) -> None:
    """The session's pipeline run, then the same config again through ``raypipe run
    --no-cache`` in a fresh folder: the fitted feature pipeline JSON, the model's bytes and
    the data-quality and training-profile reports are identical."""
    first = _digests(trained["work"])
    assert {k.split("/")[1] for k in first} == set(_COMPARED)
    args = [a for s in SMALL_RUN for a in ("--set", s)]
    r = raypipe("run", "--no-cache", *args, "--set", f"runtime.work_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    second = _digests(tmp_path)
    assert second == first, sorted(k for k in first if first[k] != second.get(k))
