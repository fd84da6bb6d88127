"""Train: a Ray Tune sweep over model families, each trial in-process or as a Ray Train run.

Parallelism is right-sized per trial:

* ``in_process`` (``train.num_workers == 1``): the trial itself fits the model on the
  materialised splits. No Ray Train controller or worker group is started, which saves the
  ~15 s fixed cost of a Train run per trial on small data.
* ``data_parallel`` (``train.num_workers > 1``, or forced by ``parallelism``): the trial
  launches a Ray Train run — ``XGBoostTrainer`` or ``TorchTrainer`` — whose workers each read
  a shard of the splits and train together (XGBoost's collective, or DDP).

Every trial reports the validation metric as it goes (every 10 boosting rounds, every epoch),
so ASHA can stop bad trials, and ends with a checkpoint of its best model.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from pipelines.config import Choice, LogUniform, RandInt, SearchDim, TrainConfig, Uniform
from pipelines.errors import RaypipeError
from pipelines.families import Family, FitContext, TrainData
from pipelines.families.base import check_metric, default_metric, higher_is_better
from pipelines.families.registry import families_for, write_family_marker
from pipelines.features.pipeline import FeaturePipeline
from pipelines.redact import redact
from pipelines.stages.cv import (
    CrossValidatedResult,
    cross_validated_fit,
    curve_recorder,
    use_cross_validation,
)

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = [
    "LABEL_COLUMN",
    "TrainContext",
    "TrainResult",
    "featurize",
    "resolve_parallelism",
    "trial_record",
    "tune_models",
]

logger = logging.getLogger(__name__)

LABEL_COLUMN = "__label__"
Parallelism = Literal["in_process", "data_parallel"]


@dataclass(frozen=True)
class TrainResult:
    """The sweep's outcome: the best model's folder and every trial's score."""

    model_dir: Path
    """A temporary folder the caller owns: copy the model out and remove it."""
    family: str
    metric: str
    mode: str
    best_score: float
    best_params: dict[str, Any]
    best_iteration: int
    parallelism: Parallelism
    trials: list[dict[str, Any]] = field(default_factory=list)
    experiment_path: str = ""


def resolve_parallelism(cfg: TrainConfig) -> Parallelism:
    if cfg.parallelism != "auto":
        return cfg.parallelism
    return "data_parallel" if cfg.num_workers > 1 else "in_process"


def _featurize_batch(table: pa.Table, pipeline: FeaturePipeline) -> pa.Table:
    out = pipeline.transform_table(table)
    label = pipeline.encode_target(table.column(pipeline.target).to_pandas())
    return out.append_column(LABEL_COLUMN, pa.array(label, type=pa.float64()))


def featurize(ds: Dataset, pipeline: FeaturePipeline) -> Dataset:
    """Apply the fitted pipeline to a labelled split: features plus an encoded label column.

    Arrow batches in and out: the transform reads Arrow columns directly (no pandas frame).
    """
    return ds.map_batches(partial(_featurize_batch, pipeline=pipeline), batch_format="pyarrow",
                          zero_copy_batch=True).materialize()


def _order_key(columns: Iterable[np.ndarray], y: np.ndarray, width: int) -> np.ndarray:
    """A random projection of each row (its ``width`` feature columns and its label)."""
    w = np.random.default_rng(0).standard_normal(width + 1)
    try:
        label = y.astype(np.float64)
    except (TypeError, ValueError):
        label = np.unique(y, return_inverse=True)[1].astype(np.float64)
    key = label * w[-1]
    for j, column in enumerate(columns):
        key += np.nan_to_num(column, nan=-7.3, posinf=1e300, neginf=-1e300) * w[j]
    return key


def canonical_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A row order that depends only on the rows' values, not on the order they arrived in.

    Ray Data hands a split over in whatever order its blocks finish (a shuffle, a dedupe),
    and XGBoost's sketches and the MLP's batches depend on row order: sorting by a random
    projection of each row makes a sweep reproducible from the same rows (~0.1 s on 1M x 30,
    where hashing the rows takes seconds). Equal keys only come from equal rows.
    """
    key = _order_key((x[:, j] for j in range(x.shape[1])), y, x.shape[1])
    return _argsort_key(key)


def _argsort_key(key: np.ndarray) -> np.ndarray:
    # Not a stable sort: equal keys are equal rows, so their order among themselves changes
    # nothing, and introsort takes 0.02-0.04 s on 1.2M keys where the stable sort takes 0.13-0.15.
    return np.argsort(key, kind="quicksort")


def _dataset_arrays(*datasets: Any, threads: int = 1,
                    dtype: type[np.floating] = np.float64) -> TrainData:
    """Materialised, featurised Datasets (concatenated) as arrays in canonical row order.

    Straight from the Arrow blocks in the object store, one column at a time, into one
    row-major matrix that is written once, already sorted; ``threads`` columns at a time
    (the Arrow and numpy kernels release the GIL). Through pandas the same took five full
    copies of the matrix (concat, to_numpy, row-major, NaN-filled key, sort): 1.4 s instead
    of 0.3-0.5 s on 1M x 30 here, on the critical path of every fit. The matrix is written
    in ``dtype`` (a family's ``input_dtype``); the row order is computed in float64 either way.
    """
    import pyarrow.compute as pc
    import ray

    tables = [t for ds in datasets for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    if not tables:  # no rows: the columns from the schema
        names = [c for c in datasets[0].schema().names if c != LABEL_COLUMN]
        return TrainData(np.empty((0, len(names)), dtype=dtype), np.empty(0), names)
    table = pa.concat_tables(tables, promote_options="default")
    names = [c for c in table.column_names if c != LABEL_COLUMN]
    y = table.column(LABEL_COLUMN).to_numpy()

    def column(name: str) -> np.ndarray:
        values = pc.cast(table.column(name), pa.float64())
        return np.asarray(pc.fill_null(values, np.nan).to_numpy())

    x = np.empty((table.num_rows, len(names)), dtype=dtype)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        columns = list(pool.map(column, names))
        order = _argsort_key(_order_key(columns, y, len(names)))

        def put(j: int) -> None:
            x[:, j] = columns[j][order]

        list(pool.map(put, range(len(names))))
    return TrainData(x, y[order], names)


def _split_arrays(split: Any) -> TrainData:
    """A split as arrays: already converted (see ``_shared_arrays``), or a Ray Dataset."""
    return split if isinstance(split, TrainData) else _dataset_arrays(split)


def _shared_arrays(ds: Dataset) -> Any:
    """Convert a split once for the whole sweep, in a task; every in-process trial then reads
    the arrays zero-copy from the object store instead of iterating and concatenating the
    Dataset itself (a fixed ~0.1-0.3 s per trial, and one private copy per trial). No CPU is
    requested so that the conversion overlaps the start of the trial actors."""
    import ray

    return ray.remote(num_cpus=0)(_split_arrays).remote(ds)


def _dimension(dim: SearchDim) -> Any:
    from ray import tune

    if isinstance(dim, Uniform):
        return tune.uniform(dim.low, dim.high)
    if isinstance(dim, LogUniform):
        return tune.loguniform(dim.low, dim.high)
    if isinstance(dim, RandInt):
        return tune.randint(dim.low, dim.high)
    assert isinstance(dim, Choice)
    return tune.choice(dim.values)


def _family_spaces(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """Each family's search space as Tune domains."""
    return {name: {k: _dimension(d) for k, d in cfg.family_settings(name).search_space.items()}
            for name in cfg.families}


def _param_space(cfg: TrainConfig) -> dict[str, Any]:
    """Random search: ``family`` is a grid over the families; each trial samples every
    family's space but only uses its own, so one Tune experiment compares them on one metric.
    (TPE searches each family's space with its own searcher: see ``pipelines.stages.search``.)
    """
    from ray import tune

    return {"family": tune.grid_search(list(cfg.families)), **_family_spaces(cfg)}


def _settings(cfg: TrainConfig, family: str) -> dict[str, Any]:
    return cfg.family_settings(family).model_dump(exclude={"params", "search_space"})


class MissingLibraryError(RaypipeError, ImportError):
    """A configured family needs a library that is not installed."""


def _check_installed(families: dict[str, Family], search: str = "random") -> None:
    """Fail here, naming the family or the search, rather than inside every trial on
    another node (or when the sweep starts)."""
    import importlib.util

    # train.search optuna and hyperopt need the library of that name.
    if search != "random" and importlib.util.find_spec(search) is None:
        raise MissingLibraryError(f"train.search: {search} needs {search!r}, which is not "
                                  "installed here (pip: raypipe-tabular[search])")
    for name, fam in families.items():
        for module in fam.libraries:
            if importlib.util.find_spec(module.split(".")[0]) is None:
                raise MissingLibraryError(
                    f"model family {name!r} needs {module!r}, which is not installed here "
                    f"(pip: {', '.join(fam.requirements) or module})")


@dataclass(frozen=True)
class TrainContext:
    """What every fit of one sweep shares, built once by :func:`tune_models`.

    Handed to Tune trials (``tune.with_parameters``), Ray tasks and Ray Train workers, so it
    holds plain values only and pickles as it is. The per-trial hyperparameters are not here:
    they come from Tune's ``config`` (the ``param_space``).
    """

    task: str
    """``binary``, ``multiclass`` or ``regression``."""
    num_classes: int
    """Classes of the encoded label (0 for regression)."""
    metric: str
    """The validation metric every trial reports and the sweep optimises."""
    seed: int
    """Seed of every fit (``train.seed``)."""
    threads: int
    """Threads a fit may use: the whole CPUs of one worker."""
    use_gpu: bool
    num_workers: int
    """Ray Train workers of a data-parallel trial."""
    cpus_per_worker: float
    storage_path: str
    """Where Tune and Ray Train keep experiments and checkpoints."""
    run_name: str
    """The sweep's name; a data-parallel trial's Train run is named after it and the trial."""
    max_failures: int
    """Restarts of a Ray Train worker group that lost a worker."""
    families: dict[str, Family]
    """The swept families, by name: objects, not names, since a family registered in the
    driver is unknown to the registry of a trial's or worker's process."""
    fixed: dict[str, dict[str, Any]]
    """Per family: the fixed hyperparameters (``train.<family>.params``), under each trial's."""
    settings: dict[str, dict[str, Any]]
    """Per family: its non-searched settings, plus ``prescaled`` (the feature pipeline scaled
    the features, so mlp and linear must not scale them again)."""
    cv_folds: int
    """Cross-validation folds of a small sweep (1: score on the validation split)."""
    cv_max_rows: int
    """Above this many rows a sweep scores on the validation split, not by folds."""

    def fit_context(self, family: str, report: Any) -> FitContext:
        """A fresh family fit's context (a worker then sets its checkpoint hooks on it)."""
        return FitContext(
            task=self.task, num_classes=self.num_classes, metric=self.metric, report=report,
            seed=self.seed, threads=self.threads, use_gpu=self.use_gpu,
            settings=self.settings[family],
        )

    def final_report(self, family: str, score: float, iterations: int, params: dict[str, Any],
                     fit_seconds: float) -> dict[str, Any]:
        """A trial's last report: the sweep's best trial and its trial record are read from it.

        fit_seconds: the family's fit alone (data to model), so a benchmark can tell the
        training work from the sweep's overhead.
        """
        return {self.metric: score, "iterations": iterations, "family": family, "final": 1,
                "params": params, "fit_seconds": fit_seconds}


# ---------------------------------------------------------------- trials


def _fit_trial(fam: Any, params: dict[str, Any], train: TrainData, valid: TrainData,
               ctx: FitContext, context: TrainContext) -> tuple[Any, int, float]:
    """One configuration's fit, by cross-validation on small data: (result, folds, seconds)."""
    start = time.perf_counter()
    folds = (context.cv_folds
             if use_cross_validation(context.cv_folds, context.cv_max_rows, train, valid)
             else 1)
    result: Any
    if folds > 1:
        result = cross_validated_fit(fam, params, train, valid, ctx, folds)
    else:
        result = fam.fit(params, train, valid, ctx)
    return result, folds, time.perf_counter() - start


def _in_process_trial(config: dict[str, Any], *, train_ds: Any, valid_ds: Any,
                      context: TrainContext, report_rounds: bool = True) -> None:
    """One trial in its Tune actor. ``report_rounds``: every round's score goes to Tune (a
    scheduler that stops trials early needs them); else the rounds are recorded here and the
    learning curve travels in the final report, and each report not sent is one less round
    trip of Tune's results through the driver."""
    import ray.tune

    family = config["family"]
    params = {**context.fixed[family], **config[family]}
    fam = context.families[family]
    train, valid = _split_arrays(train_ds), _split_arrays(valid_ds)
    curve: dict[int, float] = {}
    report = ray.tune.report if report_rounds else curve_recorder(curve, context.metric)
    ctx = context.fit_context(family, report)
    result, folds, fit_seconds = _fit_trial(fam, params, train, valid, ctx, context)
    recorded = {CURVE: _curve_points(curve)} if curve else {}
    with tempfile.TemporaryDirectory() as tmp:
        fam.save(result.model, Path(tmp))
        write_family_marker(Path(tmp), fam)
        ray.tune.report({**context.final_report(family, result.score, result.iterations,
                                                params, fit_seconds), "cv_folds": folds,
                         # Rounds not reported one by one, or (a cross-validated trial)
                         # the folds' mean curve: the learning curve comes here.
                         **recorded, **_curve_field(result)},
                        checkpoint=ray.tune.Checkpoint.from_directory(tmp))


def _curve_field(result: Any) -> dict[str, Any]:
    """The folds' mean learning curve of a cross-validated fit, as a report field."""
    if isinstance(result, CrossValidatedResult):
        return {CURVE: [list(point) for point in result.curve]}
    return {}


def _curve_points(curve: dict[int, float]) -> list[list[float]]:
    """A recorded learning curve (see ``curve_recorder``) as a report field's points."""
    return [[r, v] for r, v in sorted(curve.items())]


CURVE = "curve"
"""A final report's learning curve: ``[[round, metric], ...]`` (cross-validated trials)."""


def _single_fit_task(train_ds: Any, valid_ds: Any, context: TrainContext,
                     family: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The whole sweep when it is one configuration: one fit in a plain Ray task."""
    fam = context.families[family]
    # The family's imports (xgboost: 0.5-0.8 s in a fresh worker here) load in a thread while
    # this one converts the splits (Arrow and numpy kernels, which release the GIL).
    loader = threading.Thread(target=_import_all, args=(fam.libraries,), daemon=True)
    loader.start()
    threads, dtype = context.threads, fam.input_dtype
    train = _dataset_arrays(train_ds, threads=threads, dtype=dtype)
    valid = _dataset_arrays(valid_ds, threads=threads, dtype=dtype)
    loader.join()
    params = dict(context.fixed[family])
    # The per-round reports are only recorded (the learning curve): with nothing to compare,
    # there is nothing for a scheduler to stop.
    curve: dict[int, float] = {}
    ctx = context.fit_context(family, curve_recorder(curve, context.metric))
    result, folds, fit_seconds = _fit_trial(fam, params, train, valid, ctx, context)
    record = {**context.final_report(family, result.score, result.iterations, params,
                                     fit_seconds), "cv_folds": folds,
              CURVE: _curve_points(curve), **_curve_field(result)}
    return record, _model_files(fam, result.model)


def _import_all(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


def _xgboost_worker(config: dict[str, Any]) -> None:
    """One Ray Train XGBoost worker: its shard, the shared collective, rank 0 checkpoints."""
    import ray.train

    from pipelines.families.xgb import XGBoostFamily

    context: TrainContext = config["context"]
    params = config["params"]
    fam: XGBoostFamily = config["family"]
    train, valid = (_dataset_arrays(ray.train.get_dataset_shard(name).materialize(),
                                    threads=context.threads, dtype=fam.input_dtype)
                    for name in ("train", "valid"))
    ctx = context.fit_context(fam.name, lambda m: ray.train.report(m))
    ctx.settings = {**ctx.settings, "global_score": True}
    ctx.checkpoint = partial(_checkpoint_from_worker, fam)
    ctx.init_model = _resumed_state(lambda d: fam.load(d).booster)
    if ctx.init_model is not None:
        logger.info("resuming the fit from round %d", ctx.init_model.num_boosted_rounds())
    start = time.perf_counter()
    result = fam.fit(params, train, valid, ctx)
    _report_from_worker(fam, result, context, params, time.perf_counter() - start,
                        resumed_from_round=(ctx.init_model.num_boosted_rounds()
                                            if ctx.init_model is not None else 0))


def _resumed_state(load: Callable[[Path], Any]) -> Any:
    """What ``load`` reads from the worker group's latest checkpoint, or None on a first start
    (Ray Train hands one over when ``FailureConfig`` restarted the group)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return load(Path(d))


def _checkpoint_from_worker(fam: Any, model: Any, metrics: dict[str, float]) -> None:
    """Every worker reports (Ray Train's reports are collective); rank 0 adds the model."""

    def write(directory: Path) -> None:
        fam.save(model, directory)
        write_family_marker(directory, fam)

    _report_with_files(write, metrics)


def _report_with_files(write: Any, metrics: dict[str, float]) -> None:
    """``ray.train.report`` from every worker, with a checkpoint that rank 0 ``write``s."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            write(Path(tmp))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def _torch_worker(config: dict[str, Any]) -> None:
    """One Ray Train TorchTrainer worker: DDP over shards, globally averaged early stopping."""
    import ray.train

    from pipelines.families.mlp import MLPFamily, load_train_state, save_train_state

    context: TrainContext = config["context"]
    params = config["params"]
    fam: MLPFamily = config["family"]
    train, valid = (_dataset_arrays(ray.train.get_dataset_shard(name).materialize(),
                                    threads=context.threads, dtype=fam.input_dtype)
                    for name in ("train", "valid"))
    ctx = context.fit_context(fam.name, lambda m: ray.train.report(m))
    ctx.checkpoint = lambda state, metrics: _report_with_files(
        partial(save_train_state, state), metrics)
    # A finished model's checkpoint holds no training state: that fit starts over.
    ctx.init_model = _resumed_state(load_train_state)
    done = int(ctx.init_model["epoch"]) if ctx.init_model is not None else 0
    if done:
        logger.info("resuming the fit after epoch %d", done)
    start = time.perf_counter()
    result = fam.fit_distributed(params, train, valid, ctx, config["scaler"])
    _report_from_worker(fam, result, context, params, time.perf_counter() - start,
                        resumed_from_round=done)


def _report_from_worker(fam: Any, result: Any, context: TrainContext,
                        params: dict[str, Any], fit_seconds: float,
                        resumed_from_round: int = 0) -> None:
    final = context.final_report(fam.name, result.score, result.iterations, params, fit_seconds)
    _checkpoint_from_worker(fam, result.model, {**final, "resumed_from_round": resumed_from_round})


def _data_parallel_trial(config: dict[str, Any], *, train_ds: Any, valid_ds: Any,
                         context: TrainContext, scaler: Any = None) -> None:
    import ray.train
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    family = config["family"]
    fam = context.families[family]
    if fam.data_parallel is None:  # nothing to parallelise (linear: one solver call)
        _in_process_trial(config, train_ds=train_ds, valid_ds=valid_ds, context=context)
        return
    params = {**context.fixed[family], **config[family]}
    # A Ray Train worker's result queue holds one report, and the controller takes it when it
    # polls the workers, every 2 s by default: a worker reporting every 10 boosting rounds
    # waits up to 2 s at each report (13 s of a 21 s run on 1M rows). Poll often instead;
    # Ray Train propagates the variable from this process to its controller, and a value
    # the user set wins.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    loop_config: dict[str, Any] = {"context": context, "params": params, "family": fam}
    common: dict[str, Any] = {
        "datasets": {"train": train_ds, "valid": valid_ds},
        "scaling_config": ray.train.ScalingConfig(
            num_workers=context.num_workers, use_gpu=context.use_gpu,
            resources_per_worker={"CPU": context.cpus_per_worker},
        ),
        "run_config": ray.train.RunConfig(
            name=f"{context.run_name}-{ray.tune.get_context().get_trial_id()}",
            storage_path=context.storage_path,
            failure_config=ray.train.FailureConfig(max_failures=context.max_failures),
            # Periodic checkpoints exist to resume from: the latest two are enough (the newest
            # may still be uploading when a worker dies) and storage does not fill up.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
        ),
    }
    if fam.data_parallel == "xgboost":
        from ray.train.xgboost import XGBoostTrainer

        trainer: Any = XGBoostTrainer(_xgboost_worker, train_loop_config=loop_config, **common)
    elif fam.data_parallel == "torch":
        from ray.train.torch import TorchTrainer

        assert scaler is not None, "the sweep computes the MLP's scaler before its trials"
        loop_config["scaler"] = scaler
        trainer = TorchTrainer(_torch_worker, train_loop_config=loop_config, **common)
    else:
        raise ValueError(f"model family {family!r}: no Ray Train backend {fam.data_parallel!r} "
                         "(xgboost, torch, or None to fit inside the trial)")
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"{family} trial: the Ray Train run produced no checkpoint")
    metrics = dict(result.metrics or {})
    ray.tune.report(
        {**context.final_report(family, metrics[context.metric], metrics["iterations"],
                                params, metrics["fit_seconds"]),
         # > 0: a worker died and the restarted group continued from this round's checkpoint.
         "resumed_from_round": metrics.get("resumed_from_round", 0)},
        checkpoint=result.checkpoint,
    )


# ---------------------------------------------------------------- the sweep


def _refit_task(train_ds: Any, valid_ds: Any, context: TrainContext, family: str,
                params: dict[str, Any], iterations: int) -> dict[str, bytes]:
    """Fit ``family`` with ``params`` on train + valid for exactly ``iterations``."""
    fam = context.families[family]
    threads, dtype = context.threads, fam.input_dtype
    train = _dataset_arrays(train_ds, valid_ds, threads=threads, dtype=dtype)
    valid = _dataset_arrays(valid_ds, threads=threads, dtype=dtype)
    # No early stopping: the sweep already chose the round or epoch count.
    settings = fam.fixed_iterations(dict(context.settings[family]), iterations)
    ctx = replace(context, settings={family: settings}).fit_context(family, lambda m: None)
    return _model_files(fam, fam.fit(params, train, valid, ctx).model)


def _model_files(fam: Any, model: Any) -> dict[str, bytes]:
    """A fitted model as its saved files, to hand back from a task."""
    with tempfile.TemporaryDirectory() as tmp:
        fam.save(model, Path(tmp))
        write_family_marker(Path(tmp), fam)
        return {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}


def _write_model(files: dict[str, bytes]) -> Path:
    out_dir = Path(tempfile.mkdtemp(prefix="raypipe-model-"))
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    return out_dir


_LOCAL_REFIT_MAX_ROWS = 200_000
"""A CPU refit of at most this many rows runs in the driver: a task's worker must start (or
be freed by Tune's actors) and import the family's libraries, 3-5 s on 2 cores, where the fit
itself takes well under a second. Above it, on a cluster of several nodes, the fit's memory and
CPU belong on a worker (the driver's node may be a head without CPUs for work)."""


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def _largest_node_cpus() -> int:
    """CPUs of the cluster's largest alive node (0 when Ray reports none)."""
    return int(max((n["Resources"].get("CPU", 0.0) for n in _alive_nodes()), default=0.0))


def _driver_node_is_the_cluster() -> bool:
    """Whether the cluster is one alive node with CPUs, the one this driver runs on (a local
    ``raypipe run``): a refit task could only run on this node too."""
    import ray

    nodes = _alive_nodes()
    return (len(nodes) == 1 and nodes[0]["Resources"].get("CPU", 0.0) > 0
            and nodes[0]["NodeID"] == ray.get_runtime_context().get_node_id())


def refit_in_driver(rows: int, use_gpu: bool, driver_node_is_the_cluster: bool,
                    local_max_rows: int = _LOCAL_REFIT_MAX_ROWS) -> bool:
    """Whether a refit of ``rows`` rows runs in the driver rather than in a Ray task.

    A GPU refit needs a task (the GPU is a Ray resource). On CPU, small data runs in the
    driver (see :data:`_LOCAL_REFIT_MAX_ROWS`), and so does any size when the driver's node is
    the whole cluster: there the task would run on the same node with the same threads, after
    a worker start and the family's imports unless an idle worker has them (the 1M demo's
    train stage showed no difference, 20.6 s against 20.4 s on 2 cores).
    """
    return not use_gpu and (driver_node_is_the_cluster or rows <= local_max_rows)


def _refit(train_ds: Any, valid_ds: Any, context: TrainContext, family: str,
           params: dict[str, Any], iterations: int, cpus: float,
           in_driver: bool | None = None) -> Path:
    """More data for the winner: on small data sets the validation rows matter.

    The fit runs in this process or in a Ray task (``in_driver``; by default as
    :func:`refit_in_driver` decides); both run :func:`_refit_task` with the same threads, so
    the model is the same. The sweep is over when the refit runs, so on CPU a family whose
    model does not depend on the thread count (``thread_invariant``) takes every CPU of the
    largest node (at least ``cpus``): at 1M rows it was a one-thread fit while the rest of the
    node sat idle. Other families keep the sweep's threads, so their model stays the same on
    any cluster.
    """
    import ray

    if not context.use_gpu and getattr(context.families[family], "thread_invariant", False):
        cpus = max(cpus, float(_largest_node_cpus()))
        context = replace(context, threads=max(context.threads, int(cpus)))
    args = (train_ds, valid_ds, context, family, params, iterations)
    if in_driver is None:
        in_driver = refit_in_driver(train_ds.count() + valid_ds.count(), context.use_gpu,
                                    _driver_node_is_the_cluster())
    if in_driver:
        files = _refit_task(*args)
    else:
        task = ray.remote(num_cpus=cpus, num_gpus=1 if context.use_gpu else 0)(_refit_task)
        files = ray.get(task.remote(*args))
    out_dir = _write_model(files)
    logger.info("refitted %s on train + valid for %d round(s)/epoch(s)", family, iterations)
    return out_dir


_NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


@contextmanager
def _without_tensorboard_logger() -> Iterator[None]:
    """Tune adds a TensorBoard logger to every run unless told not to, and tensorboardX imports
    torch: 1-2 s of the driver's CPU before the first trial starts (2 cores here). MLflow is
    raypipe's tracking, so the sweep keeps Tune's CSV and JSON results (passed explicitly)
    and skips TensorBoard. Tune reads the variable once, when the run starts; a value the
    user set wins."""
    if _NO_AUTO_LOGGERS in os.environ:
        yield
        return
    os.environ[_NO_AUTO_LOGGERS] = "1"
    try:
        yield
    finally:
        os.environ.pop(_NO_AUTO_LOGGERS, None)


def _experiment_path(storage_path: str, run_name: str) -> str:
    return f"{storage_path.rstrip('/')}/{run_name}"


def tune_models(
    train_ds: Dataset,
    valid_ds: Dataset,
    cfg: TrainConfig,
    *,
    task: str,
    num_classes: int,
    storage_path: str,
    run_name: str,
    resume: bool = False,
    prescaled: bool = False,
    time_ordered: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Sweep the configured families with Ray Tune and return the best trial's model.

    ``train_ds`` and ``valid_ds`` are featurised splits (see :func:`featurize`). With
    ``resume``, an interrupted experiment of the same ``run_name`` continues where it stopped
    (finished trials are kept, unfinished and errored ones run again). Small sweeps score
    trials by cross-validation (``cfg.cv_folds``) unless the rows are ``time_ordered``. A
    single configuration (one family, one sample, no search space) is fitted in one Ray task
    without Tune. ``on_progress`` is called in this process with a line on the sweep's trials
    (done / total, running, best score so far) whenever one starts, reports or ends.
    """
    metric = cfg.metric or default_metric(task)
    check_metric(metric, task)
    mode = "max" if higher_is_better(metric) else "min"
    parallelism = resolve_parallelism(cfg)
    families = families_for(list(cfg.families))
    _check_installed(families, cfg.search)
    context = TrainContext(
        task=task, num_classes=num_classes, metric=metric, seed=cfg.seed,
        threads=max(1, int(cfg.cpus_per_worker)), use_gpu=cfg.use_gpu,
        num_workers=cfg.num_workers, cpus_per_worker=cfg.cpus_per_worker,
        storage_path=storage_path, run_name=run_name, max_failures=cfg.max_failures,
        families=families,
        fixed={f: dict(cfg.family_settings(f).params) for f in cfg.families},
        settings={f: {**_settings(cfg, f), "prescaled": prescaled} for f in cfg.families},
        # Cross-validation needs the refit (its folds' models never saw every row) and must not
        # train on later rows than it scores (time split).
        cv_folds=(cfg.cv_folds if cfg.refit and parallelism == "in_process" and not time_ordered
                  else 1),
        cv_max_rows=cfg.cv_max_rows,
    )
    if parallelism == "in_process" and _single_configuration(cfg):
        outcome = _single_fit(train_ds, valid_ds, cfg, context)
    else:
        outcome = _tune_sweep(train_ds, valid_ds, cfg, context, parallelism=parallelism,
                              storage_path=storage_path, run_name=run_name, resume=resume,
                              on_progress=on_progress)
    best_metrics, out_dir = outcome.best, outcome.model_dir
    family = str(best_metrics["family"])
    params = dict(best_metrics.get("params") or {})
    iterations = int(best_metrics.get("iterations", -1))
    if cfg.refit and parallelism == "in_process" and iterations > 0:
        out_dir = _refit(train_ds, valid_ds, context, family, params, iterations,
                         cfg.cpus_per_worker)
        shutil.rmtree(outcome.model_dir, ignore_errors=True)  # the sweep's winner, replaced
    return TrainResult(
        model_dir=out_dir,
        family=family,
        metric=metric,
        mode=mode,
        best_score=float(best_metrics[metric]),
        best_params=params,
        best_iteration=iterations,
        parallelism=parallelism,
        trials=outcome.trials,
        experiment_path=outcome.experiment_path,
    )


@dataclass(frozen=True)
class _Outcome:
    best: dict[str, Any]
    """The winning trial's final report (see :meth:`TrainContext.final_report`)."""
    model_dir: Path
    trials: list[dict[str, Any]]
    experiment_path: str


def _single_configuration(cfg: TrainConfig) -> bool:
    """One family, one sample and nothing to search: the sweep is a single fit."""
    return (len(cfg.families) == 1 and cfg.num_samples == 1
            and not cfg.family_settings(cfg.families[0]).search_space)


def _single_fit(train_ds: Dataset, valid_ds: Dataset, cfg: TrainConfig,
                context: TrainContext) -> _Outcome:
    """Fit the one configuration without Tune: here, or in one Ray task.

    Tune's set-up, its trial actor (a fresh process) and the per-round reports cost 1.5-2.5 s
    on this machine; on a single configuration they buy nothing. On a single-node Ray whose
    node is this process's own, the fit runs in this process, with its CPUs reserved by a
    placement group so that Ray schedules nothing else on them: no worker process to start
    or warm up (a pooled worker is often a fresh process: Ray keeps about as many idle workers
    as CPUs and counts Ray Data's own actors against that). Anywhere else (a cluster, a
    GPU, Ray Client) it is a task that runs where the cluster has the resources and that Ray
    retries ``max_failures`` times if its worker dies.
    """
    import ray

    family = cfg.families[0]
    reservation = _local_cpus_request(cfg)
    if reservation is not None:
        logger.info("training one %s configuration in this process (nothing to tune)", family)
        # The fit does not wait for the reservation: Ray grants a placement group on a retry
        # schedule, 0.3-0.7 s after Ray Data's or a previous fit's CPUs were given back here,
        # while nothing else of this run uses them. Granted, it keeps other work off them.
        try:
            record, files = _single_fit_task(train_ds, valid_ds, context, family)
        finally:
            granted, _ = ray.wait([reservation.ready()], timeout=0)
            if not granted:
                logger.info("other work held the CPUs during the whole fit")
            ray.util.remove_placement_group(reservation)
        where = "driver"
    else:
        task = ray.remote(num_cpus=cfg.cpus_per_worker, num_gpus=1 if cfg.use_gpu else 0,
                          max_retries=cfg.max_failures)(_single_fit_task)
        logger.info("training one %s configuration in one task (nothing to tune)", family)
        # The task converts the splits itself: one worker, not a second for a conversion task.
        record, files = ray.get(task.remote(train_ds, valid_ds, context, family))
        where = "task"
    trial = {"trial_id": "single", "family": family, "params": record["params"],
             context.metric: record[context.metric], "iterations": record["iterations"],
             "fit_seconds": record["fit_seconds"], "cv_folds": record["cv_folds"],
             "resumed_from_round": 0, "status": "finished", "error": None, "ran_in": where,
             "curve": record[CURVE]}
    return _Outcome(record, _write_model(files), [trial], "")


def _local_cpus_request(cfg: TrainConfig) -> Any:
    """A placement group asking for ``cpus_per_worker`` CPUs of this process's own node, when
    Ray is that one node and has that many (requested, not waited for); else None (fit in a
    task)."""
    import ray
    from ray.util.placement_group import placement_group

    if cfg.use_gpu or ray.util.client.ray.is_connected():
        return None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    here = ray.get_runtime_context().get_node_id()
    if len(nodes) != 1 or nodes[0]["NodeID"] != here:
        return None
    if float(ray.cluster_resources().get("CPU", 0.0)) < cfg.cpus_per_worker:
        return None
    return placement_group([{"CPU": cfg.cpus_per_worker}], strategy="STRICT_PACK")


def _tune_sweep(train_ds: Dataset, valid_ds: Dataset, cfg: TrainConfig, context: TrainContext,
                *, parallelism: Parallelism, storage_path: str, run_name: str,
                resume: bool, on_progress: Callable[[str], None] | None = None) -> _Outcome:
    """A Ray Tune experiment over the families' search spaces; the best trial wins."""
    import ray
    import ray.tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler

    from pipelines.stages.sweep_progress import SweepProgress, progress_listener

    metric = context.metric
    mode = "max" if higher_is_better(metric) else "min"
    total_cpus = float(ray.cluster_resources().get("CPU", 1))
    if parallelism == "in_process":
        resources: dict[str, float] = {"cpu": cfg.cpus_per_worker, "gpu": 1 if cfg.use_gpu else 0}
        fn: Any = _in_process_trial
        per_trial = cfg.cpus_per_worker
        splits: dict[str, Any] = {"train_ds": _shared_arrays(train_ds),
                                  "valid_ds": _shared_arrays(valid_ds),
                                  "report_rounds": cfg.scheduler == "asha"}
    else:
        # The trial only drives a Ray Train run whose workers hold the CPUs. Tune refuses an
        # empty request, so the driver asks for one byte of memory and no CPU.
        resources = {"cpu": 0, "memory": 1}
        fn = _data_parallel_trial
        per_trial = cfg.cpus_per_worker * cfg.num_workers
        splits = {"train_ds": train_ds, "valid_ds": valid_ds}
        torch_family = next((f for f, fam in context.families.items()
                             if fam.data_parallel == "torch"), None)
        if torch_family is not None:
            from pipelines.families.mlp import standardizer_from_dataset

            # Once, here: the statistics are the same for every trial, and a Ray Data
            # aggregation inside a trial would be scheduled in the trial's placement group,
            # which holds no CPU for it (Ray refuses the shuffle task).
            splits["scaler"] = standardizer_from_dataset(
                train_ds, LABEL_COLUMN,
                scale=not context.settings[torch_family].get("prescaled"))
        if per_trial > total_cpus:
            logger.warning("a trial needs %.1f CPUs but the cluster has %.1f; it waits for the "
                           "autoscaler", per_trial, total_cpus)
    concurrency = cfg.max_concurrent_trials or max(1, int(total_cpus // per_trial))
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(fn, **splits, context=context),
        resources,
    )
    path = _experiment_path(storage_path, run_name)
    # Random search samples a param_space (a grid over the families); TPE searchers hold
    # their spaces themselves.
    param_space = _param_space(cfg) if cfg.search == "random" else None
    total = cfg.num_samples * len(cfg.families)
    if resume and ray.tune.Tuner.can_restore(path):
        # The searcher, its state and the progress callback come back with the experiment.
        logger.info("resuming the sweep in %s", path)
        tuner = ray.tune.Tuner.restore(path, trainable=trainable, resume_errored=True,
                                       param_space=param_space)
    else:
        scheduler = (ASHAScheduler(grace_period=cfg.grace_period, max_t=10_000)
                     if cfg.scheduler == "asha" else None)
        tuner = ray.tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=ray.tune.TuneConfig(
                metric=metric, mode=mode, scheduler=scheduler,
                # With random search each of num_samples repeats the grid over the families.
                num_samples=cfg.num_samples if cfg.search == "random" else total,
                # The search algorithm itself caps concurrency (Tune ignores
                # max_concurrent_trials when given a generator instance).
                search_alg=_search_algorithm(cfg, metric, mode, concurrency),
                # A trial's actor runs the next trial: no process start, no imports again.
                reuse_actors=True,
            ),
            run_config=ray.tune.RunConfig(
                name=run_name, storage_path=storage_path, verbose=0,
                failure_config=ray.tune.FailureConfig(max_failures=cfg.max_failures),
                callbacks=[CSVLoggerCallback(), JsonLoggerCallback(),
                           SweepProgress(total, metric, mode)],
            ),
        )
    logger.info("tuning %s x %d trial(s), %s search, %s, up to %d at once", cfg.families,
                cfg.num_samples, cfg.search, parallelism, concurrency)
    with _without_tensorboard_logger(), progress_listener(on_progress):
        grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    finished = [r for r in results if r.error is None and (r.metrics or {}).get("final")]
    if not finished:
        first = next((r.error for r in results if r.error is not None), None)
        raise RuntimeError(f"no trial finished; first error: {redact(str(first))}")
    best = grid.get_best_result(metric=metric, mode=mode, scope="last", filter_nan_and_inf=True)
    if best.checkpoint is None or not (best.metrics or {}).get("final"):
        # ASHA may stop the trial with the best last report before it checkpoints.
        sign = 1.0 if mode == "min" else -1.0
        best = min(finished, key=lambda r: sign * float((r.metrics or {})[metric]))
    assert best.checkpoint is not None
    out_dir = Path(tempfile.mkdtemp(prefix="raypipe-model-"))
    with best.checkpoint.as_directory() as d:
        for f in Path(d).iterdir():
            if f.is_file():
                (out_dir / f.name).write_bytes(f.read_bytes())
    best_metrics = best.metrics or {}
    trials = [trial_record(r, metric) for r in results]
    return _Outcome(best_metrics, out_dir, trials, grid.experiment_path)


def _search_algorithm(cfg: TrainConfig, metric: str, mode: str, concurrency: int) -> Any:
    """Tune's search algorithm for ``train.search``, seeded with ``train.seed``."""
    if cfg.search == "random":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=concurrency)
    from pipelines.stages.search import tpe_searcher

    return tpe_searcher(cfg.search, _family_spaces(cfg), metric=metric, mode=mode,
                        seed=cfg.seed, num_samples=cfg.num_samples, max_concurrent=concurrency)


def trial_record(result: Any, metric: str) -> dict[str, Any]:
    """One Tune trial as ``tune_trials.json`` and MLflow's child runs keep it."""
    metrics, config = result.metrics or {}, result.config or {}
    return {
        "trial_id": metrics.get("trial_id"),
        "family": config.get("family"),
        "params": config.get(config.get("family", ""), {}),
        metric: metrics.get(metric),
        "iterations": metrics.get("iterations"),
        "fit_seconds": metrics.get("fit_seconds"),
        # > 1: the metric is the mean over this many folds of train + valid.
        "cv_folds": metrics.get("cv_folds", 1),
        "resumed_from_round": metrics.get("resumed_from_round", 0),
        "status": "error" if result.error else ("finished" if metrics.get("final")
                                                else "stopped early"),
        # Logged to MLflow: a storage or source error may quote a URL with its credentials.
        "error": redact(str(result.error)) if result.error else None,
        "curve": _trial_curve(result, metric),
    }


def _trial_curve(result: Any, metric: str) -> list[list[float]]:
    """A trial's validation ``metric`` per round, ``[[round, value], ...]``: its per-round
    reports from Tune's result history, or (a cross-validated trial, which reports once) the
    folds' mean curve its final report carries. A round reported twice (a worker group
    restarted from a checkpoint) keeps its last value."""
    carried = (result.metrics or {}).get(CURVE)
    if carried:
        return [[int(r), float(v)] for r, v in carried]
    history = getattr(result, "metrics_dataframe", None)
    if history is None or "round" not in history or metric not in history:
        return []
    rows = history[history["round"].notna() & history[metric].notna()]
    by_round = {int(r): float(v) for r, v in zip(rows["round"], rows[metric], strict=True)}
    return [[r, v] for r, v in sorted(by_round.items())]
