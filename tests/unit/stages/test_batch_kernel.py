"""The batch inference kernel (score_batch) on pandas frames: every row predicted or quarantined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.model.engine import columns_to_frame, frame_to_columns
from pipelines.model.spec import predict_frame
from pipelines.stages.batch import REASON_COLUMN, score_batch
from tests.unit.model.helpers import SCHEMA, make_model, random_columns

MODEL = make_model("binary")


def raw(n: int = 50) -> pd.DataFrame:
    frame = columns_to_frame(random_columns(n, 5), MODEL.spec)
    frame.insert(0, "id", [f"r{i}" for i in range(n)])
    return frame


def test_good_rows_get_predictions_ids_and_the_model_version() -> None:
    frame = raw()
    out, bad = score_batch(frame, MODEL, keep=["id"], version_column="model_version")
    assert bad.empty
    assert list(out.columns) == ["id", "prediction", "probability", "model_version"]
    assert out["id"].tolist() == frame["id"].tolist()
    assert (out["model_version"] == "1").all()
    expected = predict_frame(MODEL.spec, MODEL.predictor, frame[list(SCHEMA)])
    np.testing.assert_array_equal(out["probability"].to_numpy(), expected["probability"].to_numpy())


def test_unscorable_rows_are_quarantined_with_a_reason_and_nothing_is_lost() -> None:
    frame = raw(20).astype({"tenure": object, "autopay": object})
    frame.loc[3, "tenure"] = "lots"
    frame.loc[7, "autopay"] = "perhaps"
    # Passes the column checks, but the ratio of these overflows float32: XGBoost refuses it.
    frame.loc[11, ["charges", "tenure"]] = [1e308, 1e-300]
    out, bad = score_batch(frame, MODEL, keep=None, version_column="v")
    assert len(out) + len(bad) == len(frame) == 20
    assert sorted(bad["id"]) == ["r11", "r3", "r7"]
    reasons = dict(zip(bad["id"], bad[REASON_COLUMN], strict=True))
    assert reasons["r3"].startswith("tenure: not a finite number: 'lots'")
    assert reasons["r7"].startswith("autopay: not a boolean")
    assert reasons["r11"].startswith("model failed: XGBoostError")
    assert set(out["id"]) == {f"r{i}" for i in range(20)} - {"r3", "r7", "r11"}
    assert out["probability"].between(0, 1).all()


def test_batch_and_online_paths_agree_on_the_same_rows() -> None:
    from pipelines.model.engine import predict_columns

    frame = raw(64)
    out, _ = score_batch(frame, MODEL, keep=["id"], version_column="v")
    online = predict_columns(MODEL, frame_to_columns(frame, dict(SCHEMA)), 64)
    np.testing.assert_array_equal(out["probability"].to_numpy(), online["probability"])
    assert out["prediction"].tolist() == online["prediction"].tolist()


def test_checked_rows_skip_the_row_check_but_keep_every_row() -> None:
    """Rows that passed check_rows are scored as they are: the same predictions, no row lost."""
    frame = raw(20)
    full, bad = score_batch(frame, MODEL, keep=["id"], version_column="v")
    fast, none = score_batch(frame, MODEL, keep=["id"], version_column="v", checked=True)
    assert len(bad) == len(none) == 0 and REASON_COLUMN in none.columns
    pd.testing.assert_frame_equal(full, fast)


def _arrow_block(n: int, seed: int, *, tenure: pa.DataType, signup: pa.DataType,
                 strings: pa.DataType, bad: bool) -> pa.Table:
    """Raw rows as a reader hands them over: ids first, the model's columns in ``*`` types."""
    cols = random_columns(n, seed)
    rng = np.random.default_rng(seed)
    tenure_values: list[Any] = cols["tenure"]
    if pa.types.is_floating(tenure):
        tenure_values[int(rng.integers(n))] = float("nan")  # NaN, not null: a missing value too
    if pa.types.is_integer(tenure):
        tenure_values = [None if v is None else int(v) for v in tenure_values]
    elif pa.types.is_string(tenure):
        tenure_values = [None if v is None else f"{v:.3f}" for v in tenure_values]
    if bad:  # one value the model cannot read
        tenure_values[int(rng.integers(n))] = "lots" if pa.types.is_string(tenure) else float("inf")
    arrays = {
        "id": pa.array([f"r{i}" for i in range(n)], strings),
        "tenure": pa.array(tenure_values, tenure),
        "charges": pa.array(cols["charges"], pa.float64()),
        "autopay": pa.array(cols["autopay"], pa.bool_()),
        "plan": pa.array(cols["plan"], strings),
        "region": pa.array(cols["region"], strings),
        "signup": pa.array(cols["signup"], signup) if not pa.types.is_string(signup)
        else pa.array([None if v is None else str(v) for v in cols["signup"]], signup),
        "row": pa.array(range(n), pa.int64()),
    }
    return pa.table(arrays)


@pytest.mark.parametrize(("tenure", "bad"), [  # an integer column holds no unreadable number
    (pa.float64(), False), (pa.float64(), True), (pa.float32(), False), (pa.float32(), True),
    (pa.int64(), False), (pa.string(), False), (pa.string(), True)])
@pytest.mark.parametrize("signup", [pa.timestamp("us"), pa.timestamp("ms"), pa.timestamp("ns"),
                                    pa.string()])
@pytest.mark.parametrize("strings", [pa.string(), pa.large_string()])
def test_the_arrow_check_gives_the_blocks_the_pandas_check_gives(
        tenure: pa.DataType, signup: pa.DataType, strings: pa.DataType, bad: bool,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed blocks skip the pandas check; what comes out, and what is quarantined, is the same."""
    import pipelines.stages.batch as batch

    block = _arrow_block(300, 7, tenure=tenure, signup=signup, strings=strings, bad=bad)
    pipe = MODEL.pipeline
    fast = batch._check_block(block, pipeline=pipe, quarantine_dir=str(tmp_path / "a"))
    typed = batch._typed_block(block, pipe) is not None
    assert typed == (not bad and not pa.types.is_string(tenure)
                     and signup in (pa.timestamp("us"), pa.timestamp("ms")))
    monkeypatch.setattr(batch, "_typed_block", lambda *_: None)
    slow = batch._check_block(block, pipeline=pipe, quarantine_dir=str(tmp_path / "b"))
    assert fast.schema.names == block.schema.names and fast.schema.equals(slow.schema)
    assert fast.column("id").type == strings  # columns the model does not read stay as they are
    assert fast.to_pandas().equals(slow.to_pandas())  # NaN and null both read back as NaN
    assert fast.num_rows == 300 - bad
    for folder in ("a", "b"):
        files = list((tmp_path / folder).glob("*.parquet"))
        assert len(files) == bad
        if bad:  # the whole input row, with the reason
            rows = pd.read_parquet(files[0])
            assert list(rows.columns) == [*block.column_names, REASON_COLUMN] and len(rows) == 1
            assert rows[REASON_COLUMN].iloc[0].startswith("tenure: not a finite number")


@pytest.mark.parametrize(("rows", "expected"), [
    (None, 3), (0, 1), (1, 1), (100, 1), (101, 2), (250, 3), (10_000, 3),
])
def test_the_pool_has_no_more_actors_than_batches(rows: int | None, expected: int) -> None:
    from pipelines.config import BatchConfig
    from pipelines.stages.batch import pool_size

    assert pool_size(BatchConfig(concurrency=3, batch_size=100), rows) == expected
