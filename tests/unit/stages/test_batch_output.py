"""How run_batch_inference puts its output in place: marked, whole, quarantine included.

Ray Data and the registry are stood in for by a dataset whose ``write_parquet`` writes pandas
frames, so the folder handling runs without Ray; the scoring itself is tested elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines.config import BatchConfig
from pipelines.model.engine import ModelRef
from pipelines.outputs import MARKER, OutputFolderError, read_marker
from pipelines.stages import batch


class _Scored:
    """What predict_dataset returns: writes ``good`` rows; ``bad`` rows went to quarantine."""

    def __init__(self, good: int, bad: int, quarantine_dir: str | None) -> None:
        self.good, self.bad, self.quarantine_dir = good, bad, quarantine_dir

    def write_parquet(self, path: str, **_: Any) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"prediction": [1.0] * self.good}).to_parquet(f"{path}/part-0.parquet")
        if self.bad:
            assert self.quarantine_dir is not None
            Path(self.quarantine_dir).mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"x": ["?"] * self.bad}).to_parquet(f"{self.quarantine_dir}/q.parquet")


@pytest.fixture
def scoring(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Rows the stand-in scores (``good``) and quarantines (``bad``); tests change them."""
    rows = {"good": 8, "bad": 2}
    monkeypatch.setattr("pipelines.model.engine.resolve_model", lambda uri: ModelRef(
        name="m", version="3", alias="champion", uri="models:/m/3"))
    monkeypatch.setattr(batch, "predict_dataset", lambda ds, *, quarantine_dir, **_: _Scored(
        rows["good"], rows["bad"], quarantine_dir))
    return rows


def _run(out: Path, cfg: BatchConfig | None = None, overwrite: bool = False) -> batch.BatchResult:
    return batch.run_batch_inference(None, model_uri="models:/m@champion",  # type: ignore[arg-type]
                                     tracking_uri=None, cfg=cfg or BatchConfig(),
                                     output_dir=str(out), rows_in=10, overwrite=overwrite)


def test_the_output_is_marked_and_holds_its_quarantine(scoring: dict[str, int],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "preds"
    result = _run(out)
    assert (result.rows_predicted, result.rows_quarantined) == (8, 2)
    assert result.output_dir == str(out) and result.quarantine_dir == f"{out}/_quarantine"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "_quarantine", "part-0.parquet"]
    assert read_marker(str(out))["model_uri"] == "models:/m/3"  # type: ignore[index]
    assert len(pd.read_parquet(out)) == 8  # readers skip the marker and the quarantine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds"]


def test_a_run_whose_rows_do_not_add_up_keeps_the_previous_output(
        scoring: dict[str, int], tmp_path: Path) -> None:
    out = tmp_path / "preds"
    _run(out)
    scoring["good"] = 5
    with pytest.raises(RuntimeError, match="lost rows"):
        _run(out, overwrite=True)
    assert len(pd.read_parquet(out)) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds"]
    with pytest.raises(OutputFolderError, match="not empty"):
        _run(out)  # without overwrite, even raypipe's own output stays


def test_a_configured_quarantine_inside_the_output_moves_with_it(scoring: dict[str, int],
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "preds"
    result = _run(out, BatchConfig(quarantine_dir=str(out / "_bad")))
    assert result.quarantine_dir == str(out / "_bad")
    assert len(pd.read_parquet(out / "_bad")) == 2
    elsewhere = tmp_path / "elsewhere"
    result = _run(out, BatchConfig(quarantine_dir=str(elsewhere)), overwrite=True)
    assert not (out / "_bad").exists() and len(pd.read_parquet(elsewhere)) == 2
