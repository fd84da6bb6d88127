"""The batch inference kernel (score_batch) on pandas frames: every row predicted or quarantined."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.model import predict_frame
from pipelines.serving_engine import columns_to_frame, frame_to_columns
from pipelines.stages.batch import REASON_COLUMN, score_batch
from tests.unit.test_serving_engine import SCHEMA, make_model, random_columns

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
    from pipelines.serving_engine import predict_columns

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
