"""A Tune trial as tune_trials.json and MLflow keep it (no Ray: a stand-in result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.stages.train import trial_record


@dataclass
class _Result:
    metrics: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=lambda: {"family": "xgboost",
                                                            "xgboost": {"eta": 0.1}})
    error: Exception | None = None


def test_a_finished_trial_keeps_its_family_params_and_score() -> None:
    record = trial_record(_Result({"trial_id": "a1", "logloss": 0.3, "iterations": 40,
                                   "final": 1}), "logloss")
    assert record["family"] == "xgboost" and record["params"] == {"eta": 0.1}
    assert (record["logloss"], record["iterations"], record["status"]) == (0.3, 40, "finished")
    assert record["error"] is None and record["cv_folds"] == 1


def test_a_failed_trial_s_error_is_kept_without_credentials() -> None:
    err = OSError("upload to https://minio:9000/b/ckpt?X-Amz-Credential=AKIA123&X-Amz-"
                  "Signature=f00d failed for s3://" "key:" "s3cr3t@bucket/x")
    record = trial_record(_Result({"trial_id": "a2"}, error=err), "logloss")
    assert record["status"] == "error"
    assert "AKIA123" not in record["error"] and "f00d" not in record["error"]
    assert "s3cr3t" not in record["error"] and "upload to https://minio:9000/b/ckpt" in record["error"]


def test_the_learning_curve_comes_from_the_trial_s_per_round_reports() -> None:
    import pandas as pd

    result = _Result({"trial_id": "a3", "logloss": 0.3, "final": 1})
    result.metrics_dataframe = pd.DataFrame({  # type: ignore[attr-defined]
        "logloss": [0.6, 0.5, 0.45, 0.5, 0.3],
        "round": [10, 20, 30, 30, None],  # 30 twice: a worker group resumed from a checkpoint
    })
    assert trial_record(result, "logloss")["curve"] == [[10, 0.6], [20, 0.5], [30, 0.5]]


def test_a_cross_validated_trial_s_curve_is_the_one_its_final_report_carries() -> None:
    record = trial_record(_Result({"trial_id": "a4", "logloss": 0.3, "final": 1,
                                   "curve": [[10, 0.5], [20, 0.4]]}), "logloss")
    assert record["curve"] == [[10, 0.5], [20, 0.4]]
    assert trial_record(_Result({"trial_id": "a5"}), "logloss")["curve"] == []
