"""Batch inference bounded in memory on raw rows three times the object store's size (issue 18).

The module :mod:`tests.integration.batch_at_scale` runs in a subprocess because it needs a Ray
of its own with a small object store; the shared test instance's store is fixed and larger.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.own_ray import run_with_own_ray

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_batch_inference_three_times_the_object_store(tmp_path: Path) -> None:
    """2.4M raw rows (~265 MB in Arrow) under an 80 MiB object store: batch inference finishes
    (spilling allowed, a crash or a hang is not), accounts for every row, and scores a sample
    exactly as the in-memory model does. The rows are read through the product's file source,
    as ``raypipe predict`` reads them. About 75 s on a quiet 2-CPU machine."""
    result = run_with_own_ray("tests.integration.batch_at_scale", tmp_path, timeout=360)
    assert result["data_bytes"] >= 3 * result["store_bytes"]
    rows = result["rows"]
    assert result["rows_in"] == rows
    assert result["rows_predicted"] + result["rows_quarantined"] == rows
    assert result["rows_read_back"] == result["rows_predicted"]
    # The generated rows are all readable (missing values, unknown categories): none quarantined.
    assert result["rows_quarantined"] == 0
    expected, scored = result["expected_sample"], result["scored_sample"]
    assert len(expected["row_id"]) == 1_000
    assert scored["row_id"] == expected["row_id"]
    assert scored["prediction"] == expected["prediction"]
    assert scored["probability"] == pytest.approx(expected["probability"], rel=0, abs=1e-12)
