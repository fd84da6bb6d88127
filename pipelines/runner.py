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
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.features import FeaturePipeline, infer_task
from pipelines.lineage import git_sha
from pipelines.model import ModelSpec, conform_input
from pipelines.stages.batch import predict_dataset
from pipelines.stages.clean import clean_and_fit
from pipelines.stages.evaluate import Evaluation, evaluate_predictions
from pipelines.stages.ingest import read_files, read_source, source_fingerprint
from pipelines.stages.split import split_dataset
from pipelines.stages.train import featurize, tune_models
from pipelines.stages.validate import validate
from pipelines.storage import check_shared_storage

__all__ = ["STAGES", "RunSummary", "StageCallback", "run_pipeline"]

logger = logging.getLogger(__name__)

STAGES = ["ingest", "validate", "split", "features", "train", "register", "batch", "evaluate",
          "gate"]
StageCallback = Callable[[str, str, str], None]
"""Called as ``(stage, event, detail)`` with event ``start`` or ``done``."""


@dataclass
class RunSummary:
    """What a finished run produced; the CLI prints it, tests read it."""

    name: str
    run_id: str
    task: str
    family: str
    model_uri: str
    model_version: str
    alias: str
    gate_reason: str
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    counts: dict[str, int]
    outputs: dict[str, str]
    parallelism: str
    best_params: dict[str, Any]
    failed_checks: list[str] = field(default_factory=list)
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


def _run_name(cfg: PipelineConfig, resume: bool) -> str:
    """A new, timestamped name; with ``resume``, the newest earlier sweep of this pipeline."""
    if resume:
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(cfg.storage_path) if "://" in cfg.storage_path \
            else (pafs.LocalFileSystem(), cfg.storage_path)
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        earlier = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory
                         and i.base_name.startswith(f"{cfg.name}-"))
        if earlier:
            return earlier[-1]
        logger.warning("--resume: no earlier sweep of %s under %s; starting anew", cfg.name,
                       cfg.storage_path)
    return f"{cfg.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _evaluate_model(model_uri: str, test_raw: Any, cfg: PipelineConfig, task: str,
                    classes: list[Any] | None, out: Path) -> tuple[Evaluation, int]:
    """Batch-predict the test split with ``model_uri``, write it to ``out``, evaluate it."""
    predictions = predict_dataset(test_raw, model_uri=model_uri, tracking_uri=cfg.tracking_uri,
                                  cfg=cfg.batch)
    predictions.write_parquet(str(out))
    written = read_files(str(out), "parquet")
    rows = written.count()
    evaluation = evaluate_predictions(
        written, target=cfg.target, task=task, classes=classes,
        slices=list(cfg.evaluate.slices),
        plot_dir=out.parent / f"{out.name}_plots" if cfg.evaluate.plots else None,
    )
    return evaluation, rows


def run_pipeline(cfg: PipelineConfig, on_stage: StageCallback | None = None,
                 resume: bool = False) -> RunSummary:
    """Run every stage of ``cfg`` on the connected Ray cluster and return the summary.

    With ``resume`` the Tune sweep of the newest earlier run of this pipeline continues
    (finished trials are kept); the stages before it run again, deterministically.
    """
    check_shared_storage(cfg)  # before any work: node-local paths fail here, by field
    import mlflow
    import pyarrow as pa

    from pipelines import tracking
    from pipelines.families import get_family
    from pipelines.stages.checks import failed_checks, run_model_checks
    from pipelines.stages.gate import decide, default_gate_metric
    from pipelines.stages.plots import feature_importance_plot

    started = time.perf_counter()
    stage = _Stages(on_stage)
    run_name = _run_name(cfg, resume)
    out_dir = cfg.output_dir / run_name
    counts: dict[str, int] = {}
    outputs: dict[str, str] = {}

    with tracking.tracking_scope(cfg), mlflow.start_run(run_name=run_name) as run:
        mlflow.log_dict(cfg.model_dump(mode="json", by_alias=True), "config.yaml")
        sha = git_sha()
        mlflow.set_tags({
            "raypipe.pipeline": cfg.name, "raypipe.git_sha": sha or "unknown",
            "raypipe.git_dirty": str(bool(sha and sha.endswith("-dirty"))).lower(),
            **{f"raypipe.version.{k}": v for k, v in tracking.package_versions().items()},
        })

        with stage("ingest") as note:
            raw = read_source(cfg.source, cfg.work_dir)
            data_path, fingerprint = source_fingerprint(cfg.source, cfg.work_dir)
            mlflow.set_tag("raypipe.data_fingerprint", fingerprint)
            note["detail"] = f"fingerprint {fingerprint[:12]}"

        with stage("validate") as note:
            checked = validate(raw, cfg.schema_, cfg.target)
            quarantine_path = out_dir / "quarantine"
            if checked.rows_quarantined:
                checked.quarantined.write_parquet(str(quarantine_path))
            counts |= {"rows_in": checked.rows_in, "rows_valid": checked.rows_valid,
                       "rows_quarantined": checked.rows_quarantined}
            tracking.log_dataset(data_path, fingerprint, cfg.name, checked.rows_in)
            note["detail"] = (f"{checked.rows_valid} passed, {checked.rows_quarantined} "
                              f"quarantined")

        with stage("split") as note:
            valid_rows = checked.valid
            target_type = valid_rows.schema().base_schema.field(cfg.target).type
            numeric_target = pa.types.is_integer(target_type) or pa.types.is_floating(target_type)
            labels = valid_rows.unique(cfg.target) if cfg.task != "regression" else None
            task = _resolve_task(cfg, labels, numeric_target)
            train_raw, valid_raw, test_raw = split_dataset(
                valid_rows, cfg.split, cfg.target, classification=task != "regression"
            )
            counts |= {"rows_train": train_raw.count(), "rows_valid_split": valid_raw.count(),
                       "rows_test": test_raw.count()}
            mlflow.log_params({"task": task, "split.strategy": cfg.split.strategy,
                               "split.seed": cfg.split.seed})
            note["detail"] = (f"{task}: {counts['rows_train']}/{counts['rows_valid_split']}/"
                              f"{counts['rows_test']}")

        with stage("features") as note:
            cleaned = clean_and_fit(train_raw, target=cfg.target, task=task,
                                    clean=cfg.clean, features=cfg.features)
            pipeline: FeaturePipeline = cleaned.pipeline
            train_raw = cleaned.train
            counts |= cleaned.counts
            if cleaned.quarantined:
                removed = cleaned.quarantined[0].union(*cleaned.quarantined[1:])
                clean_quarantine = out_dir / "quarantine_clean"
                removed.write_parquet(str(clean_quarantine))
                outputs["quarantine_clean"] = str(clean_quarantine.resolve())
            train_feat = featurize(train_raw, pipeline)
            valid_feat = featurize(valid_raw, pipeline)
            mlflow.log_text(pipeline.model_dump_json(indent=2), "feature_pipeline.json")
            note["detail"] = f"{len(pipeline.feature_names)} features"

        families = ",".join(cfg.train.families)
        with stage("train", f"{families}: {cfg.train.num_samples} trial(s) each") as note:
            result = tune_models(
                train_feat, valid_feat, cfg.train, task=task,
                num_classes=len(pipeline.classes or []), storage_path=cfg.storage_path,
                run_name=run_name, resume=resume, prescaled=pipeline.scaling != "none",
            )
            mlflow.log_params({"family": result.family,
                               **{f"best.{k}": v for k, v in result.best_params.items()}})
            mlflow.log_metric(f"valid_{result.metric}", result.best_score)
            mlflow.set_tag("raypipe.parallelism", result.parallelism)
            tracking.log_json(result.trials, "tune_trials.json")
            tracking.log_trials(result.trials, result.metric)
            note["detail"] = f"best {result.family}: valid {result.metric} {result.best_score:.4f}"

        with stage("register") as note:
            spec = ModelSpec(pipeline=pipeline, threshold=cfg.evaluate.threshold, name=cfg.name,
                             family=result.family)
            example = test_raw.drop_columns([cfg.target]).limit(5).to_pandas()
            info = tracking.log_pipeline_model(spec, result.model_dir, example)
            note["detail"] = info.model_uri

        with stage("batch") as note:
            pred_path = out_dir / "test_predictions"
            evaluation, counts["rows_predicted"] = _evaluate_model(
                info.model_uri, test_raw, cfg, task, pipeline.classes, pred_path)
            if counts["rows_predicted"] != counts["rows_test"]:
                raise RuntimeError(
                    f"batch inference wrote {counts['rows_predicted']} rows for "
                    f"{counts['rows_test']} test rows"
                )
            note["detail"] = str(pred_path)

        with stage("evaluate") as note:
            metrics = evaluation.metrics
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            mlflow.log_metrics({k: float(v) for k, v in counts.items()})
            tracking.log_json({"confusion": evaluation.confusion, "slices": evaluation.slices},
                              "evaluation.json")
            mlflow.log_metrics(_slice_metrics(evaluation.slices))
            plots = list(evaluation.plots)
            if cfg.evaluate.plots:
                model = get_family(result.family).load(result.model_dir)
                importances = _importances(result.family, model, result.model_dir,
                                           pipeline.feature_names)
                plots.append(feature_importance_plot(
                    importances, pred_path.parent / "feature_importance.png"))
            for p in plots:
                mlflow.log_artifact(str(p), "plots")
            shown = {k: v for k, v in metrics.items() if "_class_" not in k}
            note["detail"] = ", ".join(f"{k} {v:.3f}" for k, v in list(shown.items())[:6])

        with stage("gate") as note:
            gate_metric = cfg.evaluate.gate.metric or default_gate_metric(task)
            champion = tracking.alias_version(cfg.model_name, "champion")
            champion_metrics = None
            if champion is not None:
                champion_eval, _ = _evaluate_model(
                    f"models:/{cfg.model_name}/{champion}", test_raw, cfg, task,
                    pipeline.classes, out_dir / "champion_predictions")
                champion_metrics = champion_eval.metrics
                mlflow.log_metrics({f"champion_test_{k}": v for k, v in champion_metrics.items()})
            loaded = mlflow.pyfunc.load_model(info.model_uri)
            sample = test_raw.drop_columns([cfg.target]).limit(cfg.evaluate.checks.sample_rows)
            checks = run_model_checks(
                lambda df: loaded.predict(conform_input(df, spec)), sample.to_pandas(),
                task=task, classes=pipeline.classes,
                latency_budget_ms=cfg.evaluate.checks.latency_budget_ms,
            )
            failed = failed_checks(checks)
            tracking.log_json([c.__dict__ for c in checks], "checks.json")
            decision = decide(
                metrics, champion_metrics, metric=gate_metric, margin=cfg.evaluate.gate.margin,
                slice_floor=cfg.evaluate.gate.slice_floor, new_slices=evaluation.slices,
                failed_checks=failed,
            )
            version = tracking.register_model(
                info.model_uri, cfg.model_name, decision.alias,
                tags={"run_id": run.info.run_id, "data_fingerprint": fingerprint,
                      "gate": decision.reason[:500]},
            )
            mlflow.set_tags({"raypipe.gate.alias": decision.alias,
                             "raypipe.gate.reason": decision.reason[:500]})
            note["detail"] = f"version {version} → @{decision.alias}: {decision.reason}"

    outputs["test_predictions"] = str(pred_path.resolve())
    if checked.rows_quarantined:
        outputs["quarantine"] = str(quarantine_path.resolve())
    return RunSummary(
        name=cfg.name,
        run_id=run.info.run_id,
        task=task,
        family=result.family,
        model_uri=f"models:/{cfg.model_name}@{decision.alias}",
        model_version=version,
        alias=decision.alias,
        gate_reason=decision.reason,
        metrics=metrics,
        champion_metrics=champion_metrics,
        counts=counts,
        outputs=outputs,
        parallelism=result.parallelism,
        best_params=result.best_params,
        failed_checks=failed,
        stage_seconds=stage.seconds,
        wall_seconds=time.perf_counter() - started,
    )


def _slice_metrics(slices: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Per-slice test metrics as flat MLflow metric names: ``slice.plan.basic.roc_auc``."""
    import math
    import re

    out: dict[str, float] = {}
    for column, values in slices.items():
        for value, metrics in values.items():
            key = re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", f"slice.{column}.{value}")
            out |= {f"{key}.{m}": v for m, v in metrics.items()
                    if isinstance(v, (int, float)) and math.isfinite(v)}
    return out


def _importances(family: str, predictor: Any, model_dir: Path,
                 names: list[str]) -> dict[str, float]:
    """Feature importances of the saved model, read back the way its family stores them."""
    from pipelines.families import get_family

    fam = get_family(family)
    if family == "xgboost":
        return fam.importances(predictor.booster, names)
    if family == "linear":
        return fam.importances(predictor, names)
    return fam.importances({"model": predictor.model}, names)

