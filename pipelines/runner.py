"""The runner: orders the stages, caches their outputs, owns the MLflow run.

Stages stay pure (Dataset and config in, Dataset or fitted object out); everything that
touches storage or MLflow happens here. Each stage's output is written to the stage cache
(:mod:`pipelines.cache`) under a key of its inputs, and the next stage reads it from there, so
a run that dies continues from its last finished stage and an unchanged stage is never
recomputed. The caller (CLI or ``ray_jobs``) starts Ray.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.cache import CacheEntry, StageCache, code_version, stage_key
from pipelines.config import PipelineConfig
from pipelines.errors import RaypipeError
from pipelines.features.pipeline import FeaturePipeline, infer_task
from pipelines.lineage import git_sha
from pipelines.model.spec import ModelSpec, conform_input
from pipelines.monitoring.reference import log_reference
from pipelines.quality import log_quality_files, validate_and_report
from pipelines.redact import redact_config
from pipelines.stages.batch import count_parquet_rows, predict_dataset
from pipelines.stages.clean import clean_and_fit
from pipelines.stages.evaluate import Evaluation, evaluate_predictions
from pipelines.stages.ingest import (
    fingerprinted_from_read,
    read_files,
    read_source,
    rows_read,
    source_errors,
    source_fingerprint,
)
from pipelines.stages.split import distinct_values, split_dataset
from pipelines.stages.train import featurize, tune_models
from pipelines.storage import StoragePath
from pipelines.storage import storage_path as storage_path_of
from pipelines.storage.shared import check_shared_storage

__all__ = ["STAGES", "MissingStageError", "RunSummary", "StageCallback", "plan_stages", "run_pipeline"]

logger = logging.getLogger(__name__)

StageCallback = Callable[[str, str, str], None]
"""Called as ``(stage, event, detail)`` with event ``start``, ``progress`` (a running stage's
latest state, e.g. the train stage's trials) or ``done``."""


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
    reused_stages: list[str] = field(default_factory=list)
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

    def progress(self, name: str) -> Callable[[str], None] | None:
        """What a running stage calls with a line on its progress (None: nobody listens)."""
        callback = self.callback
        if callback is None:
            return None
        return lambda detail: callback(name, "progress", detail)


def plan_stages(from_stage: str | None = None, only: str | None = None,
                no_cache: bool = False) -> tuple[list[str], set[str]]:
    """``(stages to run, stages that must be recomputed)`` for ``--from`` / ``--only`` /
    ``--no-cache`` (which recomputes from the first stage).

    Stages before the first forced one still "run" — as cache lookups that load their outputs.
    With ``only``, those lookups must hit (see :class:`MissingStageError`).
    """
    for name, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in STAGES:
            raise ValueError(f"{name} {value!r} is not a stage; stages: {', '.join(STAGES)}")
    if no_cache and (from_stage or only):
        raise ValueError("--no-cache recomputes every stage: leave out --from/--only, or "
                         "--no-cache")
    if no_cache:
        from_stage = STAGES[0]
    if from_stage and only:
        raise ValueError("use --from or --only, not both")
    if only:
        return STAGES[: STAGES.index(only) + 1], {only}
    first = STAGES.index(from_stage) if from_stage else len(STAGES)
    return list(STAGES), set(STAGES[first:])


class MissingStageError(RaypipeError, RuntimeError):
    """``--only STAGE`` needs the outputs of the stages before it, and one has none cached."""


def _run_name(cfg: PipelineConfig) -> str:
    return f"{cfg.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _read(path: StoragePath) -> Any:
    return read_files(str(path), "parquet")


def _write(ds: Any, path: StoragePath) -> int:
    """Write ``ds`` as Parquet to ``path`` and return the rows written (read back, not assumed).

    Files are numbered in block order (``preserve_order``), not in the order tasks happen to
    finish, so reading a stage's output back yields the same row order every run: training
    is only reproducible if its input rows arrive in the same order.
    """
    ds.context.execution_options.preserve_order = True
    ds.write_parquet(str(path))
    return count_parquet_rows(str(path)) if path.exists() else 0  # footers: no Ray job


def _model_exists(model_uri: str) -> bool:
    """Whether the tracking store still holds a model logged by an earlier run."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError):
        return False
    return True


class _Run:
    """One pipeline run: resolves each stage from the cache or computes it, then records it.

    Every stage method returns a JSON-serialisable record (counts, parameters, paths relative
    to its cache folder); the record is logged to MLflow the same way whether it was computed
    now or reused, so every run's MLflow entry is complete.
    """

    def __init__(self, cfg: PipelineConfig, stage: _Stages, forced: set[str], only: str | None,
                 resume: bool, connect: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self._connect = connect
        self.stage = stage
        self.forced = forced
        self.only = only
        self.resume = resume
        self.cache = StageCache(cfg.cache_dir)
        self.keys: dict[str, str] = {}
        self.entries: dict[str, CacheEntry] = {}
        self.reused: list[str] = []
        self._reads_sized = False

    def resolve(self, name: str, key: str, compute: Callable[[CacheEntry], dict[str, Any]],
                still_valid: Callable[[dict[str, Any]], bool] = lambda _r: True
                ) -> dict[str, Any]:
        """The stage's record: reused when its key is cached (and not forced), else computed."""
        entry = self.cache.entry(name, key)
        self.keys[name], self.entries[name] = key, entry
        record = entry.load() if name not in self.forced else None
        if record is not None and still_valid(record):
            self.reused.append(name)
            logger.info("stage %s reused: unchanged inputs (key %s)", name, key[:12])
            return record
        if self.only is not None and name != self.only:
            raise MissingStageError(
                f"--only {self.only} needs the output of stage {name!r}, which is not cached "
                f"for this config and data; run without --only first (or use --from {name})"
            )
        entry.reset()
        self.ensure_ray()
        record = compute(entry)
        entry.commit(record)
        return record

    def ensure_ray(self) -> None:
        """Connect to Ray the first time something must be computed.

        A run whose every stage is reused reads only the stage cache and the tracking store,
        so it never pays for starting (or joining) a Ray cluster.
        """
        if self._connect is not None:
            connect, self._connect = self._connect, None
            connect()
            check_shared_storage(self.cfg)  # now that the cluster's nodes are known
        if not self._reads_sized:  # also when the caller connected (a job, a test session)
            self._reads_sized = True
            size_reads()

    def path(self, stage: str, *parts: str) -> StoragePath:
        return self.entries[stage].path.joinpath(*parts)


def size_reads() -> None:
    """Split reads into two blocks per CPU of the cluster, never more than Ray Data would.

    Ray Data cuts a read into at least ``read_op_min_num_blocks`` (200) blocks of at least
    1 MiB, sized for large clusters. Every pass over the data then runs one task per block: on
    2 CPUs the 1M-row demo (113 MB) became 113 blocks, so each of the ~30 passes of a run paid
    113 task round trips and the profiles merged 113 summaries in the driver, for two cores.
    Two blocks per CPU keep every CPU busy. The count depends on the cluster's size, not on its
    load, so the same cluster cuts the same data into the same blocks on every run.
    """
    import ray

    if not ray.is_initialized():
        return
    ctx = ray.data.DataContext.get_current()
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus:
        ctx.read_op_min_num_blocks = min(ctx.read_op_min_num_blocks, 2 * cpus)


def _find_unfinished_run(cfg: PipelineConfig) -> str | None:
    """The newest MLflow run of this pipeline that never finished (its driver died)."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=[cfg.experiment_name], max_results=1, output_format="list",
        filter_string=f"tags.`raypipe.pipeline` = '{cfg.name}' and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


def run_pipeline(cfg: PipelineConfig, on_stage: StageCallback | None = None,
                 resume: bool = False, from_stage: str | None = None,
                 only: str | None = None, use_cache: bool = True,
                 connect: Callable[[], None] | None = None) -> RunSummary:
    """Run the stages of ``cfg`` on the connected Ray cluster and return the summary.

    Each stage's output is cached under a key of its inputs (:mod:`pipelines.cache`): an
    unchanged stage is reused, not recomputed. ``resume`` also continues the interrupted Tune
    sweep and MLflow run of the same inputs; ``from_stage`` recomputes that stage and every
    later one; ``only`` runs just that stage on the cached outputs of the ones before it (and
    returns a partial summary); ``use_cache=False`` recomputes everything. ``connect`` starts
    or joins Ray, called once before the first stage that must compute (none when every stage
    is reused); without it the caller has connected already.
    """
    check_shared_storage(cfg)  # before any work: node-local paths fail here, by field
    import mlflow

    from pipelines import tracking

    stages, forced = plan_stages(from_stage, only, no_cache=not use_cache)
    started = time.perf_counter()
    stage = _Stages(on_stage)
    run = _Run(cfg, stage, forced, only, resume, connect)

    with tracking.tracking_scope(cfg):
        previous = _find_unfinished_run(cfg) if resume else None
        if previous:
            logger.info("--resume: continuing MLflow run %s", previous)
        with mlflow.start_run(run_id=previous, run_name=None if previous else _run_name(cfg)) \
                as active:
            summary = _run_stages(run, stages, active.info.run_id)
            mlflow.set_tag("raypipe.reused_stages", ",".join(run.reused) or "none")
            mlflow.set_tags({f"raypipe.stage_key.{k}": v for k, v in run.keys.items()})
    summary.stage_seconds = stage.seconds
    summary.reused_stages = list(run.reused)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _run_stages(run: _Run, stages: list[str], run_id: str) -> RunSummary:
    """Record the run's config and code, then run the planned stages in order.

    ``stages`` is a prefix of :data:`STAGES` (see :func:`plan_stages`): the loop stops after
    its last one, and the summary holds what the stages run so far filled in.
    """
    cfg = run.cfg
    _log_run_identity(cfg)
    summary = RunSummary(name=cfg.name, run_id=run_id, task=cfg.task or "", family="",
                         model_uri="", model_version="", alias="", gate_reason="", metrics={},
                         champion_metrics=None, counts={}, outputs={}, parallelism="",
                         best_params={})
    state = _RunState(summary=summary, raw=_SourceRows(run))
    for step in _STAGE_TABLE:
        with run.stage(step.name, step.describe(cfg) if step.describe else "") as note:
            note["detail"] = step.run(run, state)
        if step.name == stages[-1]:
            break
    return summary


def _log_run_identity(cfg: PipelineConfig) -> None:
    """The config and code versions, logged first: a run that fails in a stage still says
    what it ran."""
    import mlflow

    from pipelines import tracking

    # Masked: a header, a query parameter or a URL of the config may hold a credential.
    mlflow.log_dict(redact_config(cfg.model_dump(mode="json", by_alias=True)), "config.yaml")
    sha = git_sha()
    mlflow.set_tags({
        "raypipe.pipeline": cfg.name, "raypipe.git_sha": sha or "unknown",
        "raypipe.git_dirty": str(bool(sha and sha.endswith("-dirty"))).lower(),
        "raypipe.code_version": code_version(),
        **tracking.source_tags(sha),
        **{f"raypipe.version.{k}": v for k, v in tracking.package_versions().items()},
    })


@dataclass
class _RunState:
    """What the stages of one run hand each other, filled in stage order.

    The loop owns it; each stage reads what earlier stages set and sets its own part. A
    stage reused from the cache sets the same fields as one computed now.
    """

    summary: RunSummary
    """Returned to the caller; its ``counts`` collect every stage's row counts."""
    raw: _SourceRows
    """The source's rows, read only if a stage must compute from them."""
    data_uri: str = ""
    fingerprint: str = ""
    """Of the source data: the first part of every stage key."""
    read_count: int | None = None
    """Rows the source reported before reading (None when it cannot tell cheaply)."""
    task: str = ""
    pipeline: FeaturePipeline | None = None
    """The fitted feature pipeline (the features stage)."""
    spec: ModelSpec | None = None
    """The deployable model's spec (the register stage)."""
    model_uri: str = ""
    """The logged model (the register stage)."""

    @property
    def counts(self) -> dict[str, int]:
        return self.summary.counts

    def fitted(self) -> FeaturePipeline:
        assert self.pipeline is not None, "the features stage runs before this one"
        return self.pipeline


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline, as the runner's loop sees it."""

    name: str
    run: Callable[[_Run, _RunState], str]
    """Resolves the stage (from the cache or computed), logs it to MLflow and fills in the
    run state; returns the detail shown when it ends."""
    describe: Callable[[PipelineConfig], str] | None = None
    """The detail shown when it starts, if any."""


def _ingest(run: _Run, state: _RunState) -> str:
    """Fingerprint the source; read it only when it cannot be fingerprinted unread (HTTP)."""
    import mlflow

    cfg = run.cfg
    if fingerprinted_from_read(cfg.source):  # its fingerprint and count are the snapshot's
        state.raw.get()
    state.data_uri, state.fingerprint = source_fingerprint(cfg.source, cfg.work_dir,
                                                           state.raw.dataset)
    state.read_count = read_count = rows_read(cfg.source, state.raw.dataset, cfg.work_dir)
    if read_count is not None:
        state.counts["rows_read"] = read_count
    mlflow.set_tags({"raypipe.data_fingerprint": state.fingerprint,
                     "raypipe.source_kind": cfg.source.kind})
    rows_note = "" if read_count is None else f"{read_count} rows, "
    return f"{cfg.source.kind}: {rows_note}fingerprint {state.fingerprint[:12]}"


def _validate(run: _Run, state: _RunState) -> str:
    """Check the rows against the contract; the failing ones go to quarantine."""
    from pipelines import tracking

    cfg, counts = run.cfg, state.counts
    rec = run.resolve("validate", stage_key(
        "validate", code_version(), state.fingerprint, cfg.source.model_dump(mode="json"),
        cfg.schema_.model_dump(mode="json"), cfg.target), _compute_validate(cfg, state.raw))
    counts.update(rec["counts"])
    if "validate" in run.reused:  # a new MLflow run: it gets the stage's reports too
        log_quality_files(run.path("validate", QUALITY_DIR))
    if state.read_count is not None and state.read_count != counts["rows_in"]:
        logger.warning("the source reported %d rows, validation received %d (a live table "
                       "changed between the count and the read?)", state.read_count,
                       counts["rows_in"])
    tracking.log_dataset(state.data_uri, state.fingerprint, cfg.name, counts["rows_in"])
    if counts["rows_quarantined"]:
        state.summary.outputs["quarantine"] = str(run.path("validate", "quarantine").resolve())
    return _reused(run, "validate", f"{counts['rows_valid']} passed, "
                   f"{counts['rows_quarantined']} quarantined")


def _split(run: _Run, state: _RunState) -> str:
    """Split the valid rows into train, valid and test (and settle the task)."""
    import mlflow

    cfg, counts = run.cfg, state.counts
    rec = run.resolve("split", stage_key(
        "split", run.keys["validate"], cfg.split.model_dump(mode="json"), cfg.task),
        _compute_split(run))
    state.task = state.summary.task = rec["task"]
    counts.update(rec["counts"])
    mlflow.log_params({"task": state.task, "split.strategy": cfg.split.strategy,
                       "split.seed": cfg.split.seed})
    return _reused(run, "split", f"{state.task}: {counts['rows_train']}/"
                   f"{counts['rows_valid_split']}/{counts['rows_test']}")


def _features(run: _Run, state: _RunState) -> str:
    """Clean the training rows and fit the feature pipeline on them."""
    import mlflow

    cfg = run.cfg
    rec = run.resolve("features", stage_key(
        "features", run.keys["split"], cfg.clean.model_dump(mode="json"),
        cfg.features.model_dump(mode="json")), _compute_features(run, state.task))
    state.counts.update(rec["counts"])
    pipeline = state.pipeline = FeaturePipeline.model_validate_json(
        run.path("features", PIPELINE_FILE).read_text())
    mlflow.log_text(pipeline.model_dump_json(indent=2), "feature_pipeline.json")
    if run.path("features", CLEAN_QUARANTINE).exists():
        state.summary.outputs[CLEAN_QUARANTINE] = str(
            run.path("features", CLEAN_QUARANTINE).resolve())
    return _reused(run, "features", f"{len(pipeline.feature_names)} features")


def _train(run: _Run, state: _RunState) -> str:
    """Tune the model families on the featurised splits; the best one wins."""
    import mlflow

    from pipelines import tracking

    cfg, summary = run.cfg, state.summary
    rec = run.resolve("train", stage_key(
        "train", run.keys["features"], cfg.train.model_dump(mode="json")),
        _compute_train(run, state.task, state.fitted()))
    summary.family, summary.parallelism = rec["family"], rec["parallelism"]
    summary.best_params = rec["best_params"]
    mlflow.log_params({"family": rec["family"],
                       **{f"best.{k}": v for k, v in rec["best_params"].items()}})
    mlflow.log_metric(f"valid_{rec['metric']}", rec["best_score"])
    mlflow.set_tag("raypipe.parallelism", rec["parallelism"])
    tracking.log_artifact(run.path("train", TRIALS_FILE))
    return _reused(run, "train", f"best {rec['family']}: valid {rec['metric']} "
                   f"{rec['best_score']:.4f}")


def _describe_train(cfg: PipelineConfig) -> str:
    return (f"{','.join(cfg.train.families)}: {cfg.train.num_samples} trial(s) each, "
            f"{cfg.train.search} search")


def _register(run: _Run, state: _RunState) -> str:
    """Log the pipeline and the winning model as one MLflow model (plus its drift reference)."""
    import mlflow

    cfg = run.cfg
    spec = state.spec = ModelSpec(pipeline=state.fitted(), threshold=cfg.evaluate.threshold,
                                  name=cfg.name, family=state.summary.family)
    rec = run.resolve("register", stage_key(
        "register", run.keys["train"], cfg.evaluate.threshold, cfg.name, cfg.tracking_uri),
        _compute_register(run, spec), still_valid=lambda r: _model_exists(r["model_uri"]))
    state.model_uri = rec["model_uri"]
    mlflow.set_tag("raypipe.model_uri", state.model_uri)
    return _reused(run, "register", state.model_uri)


def _batch(run: _Run, state: _RunState) -> str:
    """Predict the test split with the logged model, as batch inference does."""
    counts, outputs = state.counts, state.summary.outputs
    rec = run.resolve("batch", stage_key("batch", run.keys["register"], run.keys["split"]),
                      _compute_batch(run, state.model_uri, counts["rows_test"]))
    counts["rows_predicted"] = rec["rows_predicted"]
    if counts["rows_predicted"] != counts["rows_test"]:
        raise RuntimeError(f"batch inference wrote {counts['rows_predicted']} rows for "
                           f"{counts['rows_test']} test rows")
    outputs["test_predictions"] = str(run.path("batch", PREDICTIONS_DIR).resolve())
    return _reused(run, "batch", outputs["test_predictions"])


def _evaluate_stage(run: _Run, state: _RunState) -> str:
    """Score the test predictions: metrics, slices and plots."""
    import mlflow

    from pipelines import tracking

    cfg = run.cfg
    rec = run.resolve("evaluate", stage_key(
        "evaluate", run.keys["batch"], list(cfg.evaluate.slices), cfg.evaluate.plots),
        _compute_evaluate(run, state.task, state.fitted()))
    metrics = state.summary.metrics = rec["metrics"]
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    mlflow.log_metrics({k: float(v) for k, v in state.counts.items()})
    tracking.log_json({"confusion": rec["confusion"], "slices": rec["slices"]},
                      "evaluation.json")
    mlflow.log_metrics(_slice_metrics(rec["slices"]))
    for p in rec["plots"]:
        tracking.log_artifact(run.path("evaluate", p), "plots")
    shown = {k: v for k, v in metrics.items() if "_class_" not in k}
    return _reused(run, "evaluate", ", ".join(
        f"{k} {v:.3f}" for k, v in list(shown.items())[:6]))


def _gate_stage(run: _Run, state: _RunState) -> str:
    """Decide champion or challenger and register the model version."""
    summary = state.summary
    _gate(run, state)
    return f"version {summary.model_version} → @{summary.alias}: {summary.gate_reason}"


_STAGE_TABLE: tuple[Stage, ...] = (
    Stage("ingest", _ingest),
    Stage("validate", _validate),
    Stage("split", _split),
    Stage("features", _features),
    Stage("train", _train, describe=_describe_train),
    Stage("register", _register),
    Stage("batch", _batch),
    Stage("evaluate", _evaluate_stage),
    Stage("gate", _gate_stage),
)
"""The stages in the order they run: the one place that order is written."""

STAGES = [step.name for step in _STAGE_TABLE]


class _SourceRows:
    """The source's Dataset, read when first asked for (by validation, when it computes)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.dataset: Any = None

    def get(self) -> Any:
        if self.dataset is None:
            self.run.ensure_ray()
            self.dataset = read_source(self.run.cfg.source, self.run.cfg.work_dir)
        return self.dataset


def _reused(run: _Run, name: str, detail: str) -> str:
    return f"reused · {detail}" if name in run.reused else detail


PIPELINE_FILE = "feature_pipeline.json"
TRIALS_FILE = "tune_trials.json"
PREDICTIONS_DIR = "test_predictions"


def _compute_validate(cfg: PipelineConfig,
                      raw: _SourceRows) -> Callable[[CacheEntry], dict[str, Any]]:
    def compute(entry: CacheEntry) -> dict[str, Any]:
        with source_errors(cfg.source):  # lazy reads fail here; name the file or page
            # Writes the quarantine and the quality report, logs them, enforces the threshold.
            checked = validate_and_report(raw.get(), cfg, entry.path / "quarantine",
                                          entry.path / QUALITY_DIR)
            rows_valid = _write(checked.valid, entry.path / "valid")
        rows_quarantined = (count_parquet_rows(str(entry.path / "quarantine"))
                            if checked.rows_quarantined else 0)
        if (rows_valid, rows_quarantined) != (checked.rows_valid, checked.rows_quarantined):
            raise RuntimeError(f"validation wrote {rows_valid} valid and {rows_quarantined} "
                               f"quarantined rows, expected {checked.rows_valid} and "
                               f"{checked.rows_quarantined}")
        return {"counts": {"rows_in": checked.rows_in, "rows_valid": rows_valid,
                           "rows_quarantined": rows_quarantined}}
    return compute


QUALITY_DIR = "quality"


def _compute_split(run: _Run) -> Callable[[CacheEntry], dict[str, Any]]:
    def compute(entry: CacheEntry) -> dict[str, Any]:
        import pyarrow as pa

        cfg = run.cfg
        valid_rows = _read(run.path("validate", "valid"))
        target_type = valid_rows.schema().base_schema.field(cfg.target).type
        numeric = pa.types.is_integer(target_type) or pa.types.is_floating(target_type)
        labels = distinct_values(valid_rows, cfg.target) if cfg.task != "regression" else None
        task = cfg.task or infer_task(labels or [], numeric)
        parts = split_dataset(valid_rows, cfg.split, cfg.target,
                              classification=task != "regression", labels=labels)
        rows = [_write(ds, entry.path / name) for ds, name in zip(parts, SPLITS, strict=True)]
        return {"task": task, "counts": {"rows_train": rows[0], "rows_valid_split": rows[1],
                                         "rows_test": rows[2]}}
    return compute


SPLITS = ("train", "valid", "test")


def _train_rows(run: _Run) -> StoragePath:
    """The training split as the features were fitted on it (after row cleaning)."""
    return run.path("features", "train")


def _compute_features(run: _Run, task: str) -> Callable[[CacheEntry], dict[str, Any]]:
    def compute(entry: CacheEntry) -> dict[str, Any]:
        cfg = run.cfg
        cleaned = clean_and_fit(_read(run.path("split", "train")), target=cfg.target, task=task,
                                clean=cfg.clean, features=cfg.features)
        # The training rows as cleaned (deduplicated, rows dropped), so that training and the
        # drift reference read exactly the rows the pipeline was fitted on.
        _write(cleaned.train, entry.path / "train")
        if cleaned.quarantined:
            removed = cleaned.quarantined[0].union(*cleaned.quarantined[1:])
            _write(removed, entry.path / CLEAN_QUARANTINE)
        (entry.path / PIPELINE_FILE).write_text(cleaned.pipeline.model_dump_json(indent=2))
        return {"counts": cleaned.counts, "features": len(cleaned.pipeline.feature_names)}
    return compute


CLEAN_QUARANTINE = "quarantine_clean"


def _compute_train(run: _Run, task: str,
                   pipeline: FeaturePipeline) -> Callable[[CacheEntry], dict[str, Any]]:
    def compute(entry: CacheEntry) -> dict[str, Any]:
        from pipelines import tracking

        cfg = run.cfg
        # The sweep is named by its inputs' key, so `--resume` finds exactly this sweep.
        sweep = f"{cfg.name}-{run.keys['train'][:16]}"
        if not run.resume:
            _remove_sweep(cfg.storage_path, sweep)
        result = tune_models(
            featurize(_read(_train_rows(run)), pipeline),
            featurize(_read(run.path("split", "valid")), pipeline), cfg.train, task=task,
            num_classes=len(pipeline.classes or []), storage_path=cfg.storage_path,
            run_name=sweep, resume=run.resume, prescaled=pipeline.scaling != "none",
            time_ordered=cfg.split.strategy == "time", on_progress=run.stage.progress("train"),
        )
        (entry.path / MODEL_DIR).upload(result.model_dir)
        shutil.rmtree(result.model_dir, ignore_errors=True)  # a temporary copy, now stored
        (entry.path / TRIALS_FILE).write_text(json.dumps(result.trials, indent=2, default=str))
        tracking.log_trials(result.trials, result.metric)  # child runs, once per sweep
        return {"family": result.family, "metric": result.metric, "mode": result.mode,
                "best_score": result.best_score, "best_params": result.best_params,
                "best_iteration": result.best_iteration, "parallelism": result.parallelism,
                "experiment_path": result.experiment_path}
    return compute


MODEL_DIR = "model"


def _remove_sweep(storage_path: str, sweep: str) -> None:
    """Drop an interrupted sweep of the same inputs: without --resume it starts anew."""
    path = storage_path_of(storage_path) / sweep
    if path.exists():
        logger.info("starting the sweep anew (pass --resume to continue it): %s", path)
        path.rmtree()


def _compute_register(run: _Run, spec: ModelSpec) -> Callable[[CacheEntry], dict[str, Any]]:
    def compute(entry: CacheEntry) -> dict[str, Any]:
        from pipelines import tracking

        test_raw = _read(run.path("split", "test"))
        example = test_raw.drop_columns([run.cfg.target]).limit(5).to_pandas()
        with run.path("train", MODEL_DIR).local_copy() as model_dir:
            info = tracking.log_pipeline_model(spec, model_dir, example)
            # The drift reference lives in the run that logged the model, found from its version.
            log_reference(_read(_train_rows(run)), spec, model_dir,
                          run.cfg.monitor, seed=run.cfg.split.seed)
        return {"model_uri": info.model_uri}
    return compute


def _predict_to(model_uri: str, test_raw: Any, cfg: PipelineConfig, out: StoragePath,
                rows: int) -> int:
    """Batch-predict the ``rows`` of ``test_raw`` with ``model_uri`` into Parquet at ``out``;
    rows written."""
    predictions = predict_dataset(test_raw, model_uri=model_uri, tracking_uri=cfg.tracking_uri,
                                  cfg=cfg.batch, rows=rows)
    return _write(predictions, out)


def _compute_batch(run: _Run, model_uri: str,
                   rows: int) -> Callable[[CacheEntry], dict[str, Any]]:
    def compute(entry: CacheEntry) -> dict[str, Any]:
        rows_written = _predict_to(model_uri, _read(run.path("split", "test")), run.cfg,
                                   entry.path / PREDICTIONS_DIR, rows)
        return {"rows_predicted": rows_written}
    return compute


def _evaluate(path: StoragePath, cfg: PipelineConfig, task: str, classes: list[Any] | None,
              plot_dir: StoragePath | None) -> Evaluation:
    return evaluate_predictions(_read(path), target=cfg.target, task=task, classes=classes,
                                slices=list(cfg.evaluate.slices), plot_dir=plot_dir)


def _compute_evaluate(run: _Run, task: str,
                      pipeline: FeaturePipeline) -> Callable[[CacheEntry], dict[str, Any]]:
    def compute(entry: CacheEntry) -> dict[str, Any]:
        from pipelines.families.registry import saved_family
        from pipelines.stages.plots import feature_importance_plot

        cfg = run.cfg
        plot_dir = entry.path / "plots"
        evaluation = _evaluate(run.path("batch", PREDICTIONS_DIR), cfg, task, pipeline.classes,
                               plot_dir if cfg.evaluate.plots else None)
        plots = list(evaluation.plots)
        if cfg.evaluate.plots:
            with run.path("train", MODEL_DIR).local_copy() as model_dir:
                family = saved_family(model_dir)
                importances = family.importances(family.load(model_dir), pipeline.feature_names)
                plots.append(feature_importance_plot(importances,
                                                     plot_dir / "feature_importance.png"))
                if cfg.evaluate.explain_rows:
                    attribution = _attribution_plot(run, pipeline, family, model_dir,
                                                    plot_dir / "attributions.png")
                    plots += [attribution] if attribution is not None else []
        return {"metrics": evaluation.metrics, "confusion": evaluation.confusion,
                "slices": evaluation.slices,
                "plots": [p.relative_to(entry.path) for p in plots]}
    return compute


def _attribution_plot(run: _Run, pipeline: FeaturePipeline, family: Any, model_dir: Path,
                      path: StoragePath) -> StoragePath | None:
    """The SHAP-style summary of the first ``evaluate.explain_rows`` test rows, or None when
    the family gives no exact attributions (the MLP)."""
    import pyarrow.dataset as pads

    from pipelines.model.explain import (
        ExplanationsUnsupportedError,
        check_explainable,
        explain_frame,
        summary_columns,
    )
    from pipelines.stages.plots import attribution_summary_plot

    try:
        check_explainable(family)
    except ExplanationsUnsupportedError as err:
        logger.info("no attribution plot: %s", err)
        return None
    # The first rows in file order (the split's files are numbered): the same rows every run,
    # read from the footers on without a Ray job.
    rows = pads.dataset(str(run.path("split", "test")), format="parquet") \
        .head(run.cfg.evaluate.explain_rows).to_pandas()
    spec = ModelSpec(pipeline=pipeline, family=family.name, name=run.cfg.model_name)
    explanation = explain_frame(spec, family.load(model_dir), family, rows)
    attributions, values = summary_columns(explanation, rows, dict(pipeline.input_schema))
    return attribution_summary_plot(attributions, values, path, explanation.scale)


def _registered_version(name: str, model_uri: str) -> tuple[str, list[str]] | None:
    """``(version, aliases)`` when ``model_uri`` is already registered under ``name``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for mv in versions:
        if (mv.tags or {}).get("model_uri") == model_uri:
            # Search results leave aliases out; the version itself carries them.
            full = client.get_model_version(name, str(mv.version))
            return str(mv.version), list(full.aliases or [])
    return None


def _gate(run: _Run, state: _RunState) -> None:
    """Compare with the champion on the same test rows; register as champion or challenger.

    The gate is never cached (the registry moves under it), but it is idempotent: a model
    already registered from the same inputs is reported, not registered again.
    """
    import mlflow

    from pipelines import tracking
    from pipelines.stages.checks import failed_checks, run_model_checks
    from pipelines.stages.gate import decide, default_gate_metric

    cfg, summary, model_uri = run.cfg, state.summary, state.model_uri
    task, run_id, spec = summary.task, summary.run_id, state.spec
    assert spec is not None, "the register stage runs before the gate"
    existing = _registered_version(cfg.model_name, model_uri)
    if existing is not None and "gate" not in run.forced:
        version, aliases = existing
        alias = "champion" if "champion" in aliases else (aliases[0] if aliases else "none")
        summary.model_version, summary.alias = version, alias
        summary.gate_reason = (f"unchanged: this model is already registered as version "
                               f"{version} (@{alias}); nothing to decide")
        summary.model_uri = cfg.version_uri(version)
        run.reused.append("gate")
        return
    run.ensure_ray()
    test_raw = _read(run.path("split", "test"))
    gate_metric = cfg.evaluate.gate.metric or default_gate_metric(task)
    champion = tracking.alias_version(cfg.model_name, "champion")
    if champion is not None:
        out = cfg.output_dir / _run_name(cfg) / "champion_predictions"
        _predict_to(cfg.version_uri(champion), test_raw, cfg, out, state.counts["rows_test"])
        summary.champion_metrics = _evaluate(out, cfg, task, spec.pipeline.classes, None).metrics
        mlflow.log_metrics({f"champion_test_{k}": v
                            for k, v in summary.champion_metrics.items()})
    loaded = mlflow.pyfunc.load_model(model_uri)
    sample = test_raw.drop_columns([cfg.target]).limit(cfg.evaluate.checks.sample_rows)
    checks = run_model_checks(
        lambda df: loaded.predict(conform_input(df, spec)), sample.to_pandas(),
        task=task, classes=spec.pipeline.classes,
        latency_budget_ms=cfg.evaluate.checks.latency_budget_ms,
    )
    summary.failed_checks = failed_checks(checks)
    tracking.log_json([c.__dict__ for c in checks], "checks.json")
    evaluation = run.entries["evaluate"].load() or {}
    decision = decide(
        summary.metrics, summary.champion_metrics, metric=gate_metric,
        margin=cfg.evaluate.gate.margin, slice_floor=cfg.evaluate.gate.slice_floor,
        new_slices=evaluation.get("slices", {}), failed_checks=summary.failed_checks,
    )
    summary.model_version = tracking.register_model(
        model_uri, cfg.model_name, decision.alias,
        tags={"run_id": run_id, "data_fingerprint": state.fingerprint, "model_uri": model_uri,
              "gate": decision.reason[:500]},
    )
    summary.alias, summary.gate_reason = decision.alias, decision.reason
    summary.model_uri = cfg.alias_uri(decision.alias)
    mlflow.set_tags({"raypipe.gate.alias": decision.alias,
                     "raypipe.gate.reason": decision.reason[:500]})


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

