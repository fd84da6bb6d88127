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
