"""The runner: orders the stages, owns the MLflow run and the outputs.

Stages stay pure (Dataset and config in, Dataset or fitted object out); everything that
touches storage or MLflow happens here. The caller (CLI or ``ray_jobs``) starts Ray.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.features import FeaturePipeline, fit_feature_pipeline, infer_task
from pipelines.lineage import fingerprint_files, git_sha
from pipelines.model import ModelSpec
from pipelines.stages.batch import predict_dataset
from pipelines.stages.clean import drop_duplicates
from pipelines.stages.evaluate import evaluate_predictions
from pipelines.stages.ingest import read_files, read_source, resolve_paths, source_path
from pipelines.stages.split import split_dataset
from pipelines.stages.train import featurize, tune_xgboost
from pipelines.stages.validate import validate

__all__ = ["STAGES", "RunSummary", "StageCallback", "run_pipeline"]

logger = logging.getLogger(__name__)

STAGES = ["ingest", "validate", "split", "features", "train", "register", "batch", "evaluate"]
StageCallback = Callable[[str, str, str], None]
"""Called as ``(stage, event, detail)`` with event ``start`` or ``done``."""


@dataclass
class RunSummary:
    """What a finished run produced; the CLI prints it, tests read it."""

    name: str
    run_id: str
    task: str
    model_uri: str
    model_version: str
    metrics: dict[str, float]
    counts: dict[str, int]
    outputs: dict[str, str]
    parallelism: str
    best_params: dict[str, Any]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


class _Stages:
    """Times each stage and tells the caller when one starts and ends."""

    def __init__(self, callback: StageCallback | None) -> None:
        self.callback = callback
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, detail: str = "") -> Iterator[dict[str, str]]:
        note: dict[str, str] = {"detail": ""}
        if self.callback:
            self.callback(name, "start", detail)
        t0 = time.perf_counter()
        yield note
        self.seconds[name] = time.perf_counter() - t0
        logger.info("stage %s done in %.1fs %s", name, self.seconds[name], note["detail"])
        if self.callback:
            self.callback(name, "done", note["detail"])


def _resolve_task(cfg: PipelineConfig, labels: list[Any] | None, numeric: bool) -> str:
    if cfg.task is not None:
        return cfg.task
    assert labels is not None
    return infer_task(labels, numeric)


def run_pipeline(cfg: PipelineConfig, on_stage: StageCallback | None = None) -> RunSummary:
    """Run every stage of ``cfg`` on the connected Ray cluster and return the summary."""
    import mlflow
    import pyarrow as pa

    from pipelines import tracking

    started = time.perf_counter()
    stage = _Stages(on_stage)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_name = f"{cfg.name}-{stamp}"
    out_dir = cfg.output_dir / run_name
    counts: dict[str, int] = {}

    with tracking.tracking_scope(cfg), mlflow.start_run(run_name=run_name) as run:
        mlflow.log_dict(cfg.model_dump(mode="json", by_alias=True), "config.yaml")
        sha = git_sha()
        mlflow.set_tags({"raypipe.pipeline": cfg.name, "raypipe.git_sha": sha or "unknown"})

        with stage("ingest") as note:
            raw = read_source(cfg.source, cfg.work_dir)
            fingerprint = fingerprint_files(resolve_paths(source_path(cfg.source, cfg.work_dir)))
            mlflow.set_tag("raypipe.data_fingerprint", fingerprint)
            note["detail"] = f"fingerprint {fingerprint[:12]}"

        with stage("validate") as note:
            checked = validate(raw, cfg.schema_, cfg.target)
            quarantine_path = out_dir / "quarantine"
            if checked.rows_quarantined:
                checked.quarantined.write_parquet(str(quarantine_path))
            counts |= {"rows_in": checked.rows_in, "rows_valid": checked.rows_valid,
                       "rows_quarantined": checked.rows_quarantined}
            note["detail"] = (f"{checked.rows_valid} passed, {checked.rows_quarantined} "
                              f"quarantined")

        with stage("split") as note:
            valid_rows = checked.valid
            target_type = valid_rows.schema().base_schema.field(cfg.target).type
            numeric_target = pa.types.is_integer(target_type) or pa.types.is_floating(target_type)
            labels = (valid_rows.unique(cfg.target)
                      if cfg.task != "regression" else None)
            task = _resolve_task(cfg, labels, numeric_target)
            train_raw, valid_raw, test_raw = split_dataset(
                valid_rows, cfg.split, cfg.target, classification=task != "regression"
            )
            counts |= {"rows_train": train_raw.count(), "rows_valid_split": valid_raw.count(),
                       "rows_test": test_raw.count()}
            note["detail"] = (f"{task}: {counts['rows_train']}/{counts['rows_valid_split']}/"
                              f"{counts['rows_test']}")

        with stage("features") as note:
            if cfg.clean.dedupe:
                train_raw = drop_duplicates(train_raw)
                counts["rows_train_deduped"] = train_raw.count()
            pipeline: FeaturePipeline = fit_feature_pipeline(
                train_raw, target=cfg.target, task=task,  # type: ignore[arg-type]
                clean=cfg.clean, features=cfg.features,
            )
            train_feat = featurize(train_raw, pipeline)
            valid_feat = featurize(valid_raw, pipeline)
            mlflow.log_text(pipeline.model_dump_json(indent=2), "feature_pipeline.json")
            note["detail"] = f"{len(pipeline.feature_names)} features"

        with stage("train", f"{cfg.train.num_samples} trials") as note:
            result = tune_xgboost(
                train_feat, valid_feat, cfg.train, task=task,
                num_classes=len(pipeline.classes or []), storage_path=cfg.storage_path,
                run_name=run_name,
            )
            mlflow.log_params({k: v for k, v in result.best_params.items()})
            mlflow.log_metric(f"valid_{result.metric}", result.best_score)
            mlflow.set_tag("raypipe.parallelism", result.parallelism)
            tracking.log_json(result.trials, "tune_trials.json")
            note["detail"] = f"best valid {result.metric} {result.best_score:.4f}"

        with stage("register") as note:
            spec = ModelSpec(pipeline=pipeline, threshold=cfg.evaluate.threshold, name=cfg.name)
            example = test_raw.drop_columns([cfg.target]).limit(5).to_pandas()
            info = tracking.log_pipeline_model(spec, result.booster_path, example)
            note["detail"] = info.model_uri

        with stage("batch") as note:
            pred_path = out_dir / "test_predictions"
            predictions = predict_dataset(
                test_raw, model_uri=info.model_uri, tracking_uri=cfg.tracking_uri, cfg=cfg.batch
            )
            predictions.write_parquet(str(pred_path))
            written = read_files(str(pred_path), "parquet")
            counts["rows_predicted"] = written.count()
            if counts["rows_predicted"] != counts["rows_test"]:
                raise RuntimeError(
                    f"batch inference wrote {counts['rows_predicted']} rows for "
                    f"{counts['rows_test']} test rows"
                )
            note["detail"] = str(pred_path)

        with stage("evaluate") as note:
            metrics = evaluate_predictions(
                written, target=cfg.target, task=task, classes=pipeline.classes
            )
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            mlflow.log_metrics({k: float(v) for k, v in counts.items()})
            version = tracking.register_model(
                info.model_uri, cfg.model_name, cfg.tracking.alias,
                tags={"run_id": run.info.run_id, "data_fingerprint": fingerprint},
            )
            note["detail"] = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())

    outputs = {"test_predictions": str(pred_path.resolve())}
    if checked.rows_quarantined:
        outputs["quarantine"] = str(quarantine_path.resolve())
    return RunSummary(
        name=cfg.name,
        run_id=run.info.run_id,
        task=task,
        model_uri=f"models:/{cfg.model_name}@{cfg.tracking.alias}",
        model_version=version,
        metrics=metrics,
        counts=counts,
        outputs=outputs,
        parallelism=result.parallelism,
        best_params=result.best_params,
        stage_seconds=stage.seconds,
        wall_seconds=time.perf_counter() - started,
    )

