"""Train: a Ray Tune sweep of XGBoost, each trial in-process or as a Ray Train run.

Parallelism is right-sized per trial:

* ``in_process`` (``train.num_workers == 1``): the trial itself fits the booster on the
  materialised splits. No Ray Train controller or worker group is started, which saves the
  ~15 s fixed cost of a Train run per trial on small data.
* ``data_parallel`` (``train.num_workers > 1``, or forced by ``parallelism``): the trial
  launches a Ray Train ``XGBoostTrainer`` whose workers each read a shard of the splits and
  train together through XGBoost's collective.

Both paths share :func:`_fit_booster`, report the validation metric to Tune every few rounds
and finish with a checkpoint of the best-iteration booster.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from pipelines.config import Choice, LogUniform, RandInt, TrainConfig, Uniform
from pipelines.features import FeaturePipeline

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = [
    "LABEL_COLUMN",
    "TrainResult",
    "featurize",
    "resolve_parallelism",
    "task_objective",
    "tune_xgboost",
]

logger = logging.getLogger(__name__)

LABEL_COLUMN = "__label__"
MODEL_FILE = "model.ubj"
REPORT_EVERY = 10
Parallelism = Literal["in_process", "data_parallel"]


@dataclass(frozen=True)
class TrainResult:
    """The sweep's outcome: the best booster (file) and every trial's score."""

    booster_path: Path
    metric: str
    best_score: float
    best_params: dict[str, Any]
    best_iteration: int
    parallelism: Parallelism
    trials: list[dict[str, Any]] = field(default_factory=list)
    experiment_path: str = ""


def task_objective(task: str, num_classes: int) -> tuple[dict[str, Any], str]:
    """XGBoost objective parameters and the default validation metric for a task."""
    if task == "binary":
        return {"objective": "binary:logistic"}, "logloss"
    if task == "multiclass":
        return {"objective": "multi:softprob", "num_class": num_classes}, "mlogloss"
    return {"objective": "reg:squarederror"}, "rmse"


def resolve_parallelism(cfg: TrainConfig) -> Parallelism:
    if cfg.parallelism != "auto":
        return cfg.parallelism
    return "data_parallel" if cfg.num_workers > 1 else "in_process"


def _featurize_batch(df: pd.DataFrame, pipeline: FeaturePipeline) -> pd.DataFrame:
    out = pipeline.transform(df)
    out[LABEL_COLUMN] = pipeline.encode_target(df[pipeline.target])
    return out


def featurize(ds: Dataset, pipeline: FeaturePipeline) -> Dataset:
    """Apply the fitted pipeline to a labelled split: features plus an encoded label column."""
    return ds.map_batches(partial(_featurize_batch, pipeline=pipeline), batch_format="pandas").materialize()


def _search_space(cfg: TrainConfig) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for name, dim in cfg.search_space.items():
        if isinstance(dim, Uniform):
            space[name] = tune.uniform(dim.low, dim.high)
        elif isinstance(dim, LogUniform):
            space[name] = tune.loguniform(dim.low, dim.high)
        elif isinstance(dim, RandInt):
            space[name] = tune.randint(dim.low, dim.high)
        elif isinstance(dim, Choice):
            space[name] = tune.choice(dim.values)
    return space


def _frame_to_dmatrix(df: pd.DataFrame) -> Any:
    import xgboost

    features = df.drop(columns=[LABEL_COLUMN])
    return xgboost.DMatrix(
        features.to_numpy(dtype=np.float64), label=df[LABEL_COLUMN].to_numpy(),
        feature_names=list(features.columns),
    )


def _fit_booster(
    params: dict[str, Any],
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    *,
    num_boost_round: int,
    early_stopping_rounds: int,
    metric: str,
    report: Callable[[dict[str, float]], None],
) -> tuple[Any, float, int]:
    """Train with early stopping on the validation split; return (booster, score, iteration).

    The returned booster is cut at the best iteration, so it predicts as evaluated.
    """
    import xgboost

    class _Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if (epoch + 1) % REPORT_EVERY == 0:
                report({metric: float(evals_log["valid"][metric][-1]), "round": epoch + 1})
            return False

    dtrain, dvalid = _frame_to_dmatrix(train_df), _frame_to_dmatrix(valid_df)
    booster = xgboost.train(
        {**params, "eval_metric": metric},
        dtrain,
        num_boost_round=num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
        callbacks=[_Report()],
    )
    best_iteration = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    best_score = float(getattr(booster, "best_score", math.nan))
    return booster[: best_iteration + 1], best_score, best_iteration


def _save_checkpoint_dir(booster: Any, directory: str) -> None:
    booster.save_model(str(Path(directory) / MODEL_FILE))


# ---------------------------------------------------------------- trials


def _in_process_trial(
    config: dict[str, Any], *, train_ds: Any, valid_ds: Any, static: dict[str, Any]
) -> None:
    import ray.tune

    params = {**static["params"], **config}
    booster, score, best_it = _fit_booster(
        params, train_ds.to_pandas(), valid_ds.to_pandas(),
        num_boost_round=static["num_boost_round"],
        early_stopping_rounds=static["early_stopping_rounds"],
        metric=static["metric"],
        report=ray.tune.report,
    )
    with tempfile.TemporaryDirectory() as tmp:
        _save_checkpoint_dir(booster, tmp)
        ray.tune.report(
            {static["metric"]: score, "best_iteration": best_it, "final": 1},
            checkpoint=ray.tune.Checkpoint.from_directory(tmp),
        )


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: fit on this worker's shard, rank 0 checkpoints."""
    import ray.train

    static = config["static"]
    params = {**static["params"], **config["trial"]}
    train_df = ray.train.get_dataset_shard("train").materialize().to_pandas()
    valid_df = ray.train.get_dataset_shard("valid").materialize().to_pandas()
    rank = ray.train.get_context().get_world_rank()
    booster, score, best_it = _fit_booster(
        params, train_df, valid_df,
        num_boost_round=static["num_boost_round"],
        early_stopping_rounds=static["early_stopping_rounds"],
        metric=static["metric"],
        report=lambda m: ray.train.report(m),
    )
    final = {static["metric"]: score, "best_iteration": best_it, "final": 1}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            _save_checkpoint_dir(booster, tmp)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(final, checkpoint=checkpoint)


def _data_parallel_trial(
    config: dict[str, Any], *, train_ds: Any, valid_ds: Any, static: dict[str, Any]
) -> None:
    import ray.train
    import ray.tune
    from ray.train.xgboost import XGBoostTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial = ray.tune.get_context().get_trial_id()
    trainer = XGBoostTrainer(
        _worker_loop,
        train_loop_config={"trial": config, "static": static},
        datasets={"train": train_ds, "valid": valid_ds},
        scaling_config=ray.train.ScalingConfig(
            num_workers=static["num_workers"],
            use_gpu=static["use_gpu"],
            resources_per_worker={"CPU": static["cpus_per_worker"]},
        ),
        run_config=ray.train.RunConfig(
            name=f"{static['run_name']}-{trial}",
            storage_path=static["storage_path"],
            failure_config=ray.train.FailureConfig(max_failures=static["max_failures"]),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"trial {trial}: the Ray Train run produced no checkpoint")
    final = dict(result.metrics or {})
    ray.tune.report(
        {static["metric"]: final[static["metric"]], "best_iteration": final["best_iteration"],
         "final": 1},
        checkpoint=result.checkpoint,
    )


# ---------------------------------------------------------------- the sweep


def tune_xgboost(
    train_ds: Dataset,
    valid_ds: Dataset,
    cfg: TrainConfig,
    *,
    task: str,
    num_classes: int,
    storage_path: str,
    run_name: str,
) -> TrainResult:
    """Sweep XGBoost hyperparameters with Ray Tune and return the best trial's booster.

    ``train_ds`` and ``valid_ds`` are featurised splits (see :func:`featurize`).
    """
    import ray
    import ray.tune
    from ray.tune.search import BasicVariantGenerator

    objective, default_metric = task_objective(task, num_classes)
    metric = cfg.metric or default_metric
    mode = "max" if metric in {"auc", "aucpr", "map", "ndcg"} else "min"
    parallelism = resolve_parallelism(cfg)
    threads = max(1, int(cfg.cpus_per_worker))
    params: dict[str, Any] = {
        **objective, "tree_method": "hist", "seed": cfg.seed, "nthread": threads, **cfg.params,
    }
    if cfg.use_gpu:
        params["device"] = "cuda"
    static = {
        "params": params, "metric": metric, "num_boost_round": cfg.num_boost_round,
        "early_stopping_rounds": cfg.early_stopping_rounds, "num_workers": cfg.num_workers,
        "cpus_per_worker": cfg.cpus_per_worker, "use_gpu": cfg.use_gpu,
        "storage_path": storage_path, "run_name": run_name, "max_failures": cfg.max_failures,
    }

    total_cpus = float(ray.cluster_resources().get("CPU", 1))
    per_trial_cpus = cfg.cpus_per_worker * (cfg.num_workers if parallelism == "data_parallel" else 1)
    concurrency = cfg.max_concurrent_trials or max(1, int(total_cpus // per_trial_cpus))
    if parallelism == "in_process":
        resources: dict[str, float] = {"cpu": cfg.cpus_per_worker, "gpu": 1 if cfg.use_gpu else 0}
        trainable: Any = _in_process_trial
    else:
        # The trial only drives a Ray Train run whose workers hold the CPUs. Tune refuses an
        # empty request, so the driver asks for one byte of memory and no CPU.
        resources = {"cpu": 0, "memory": 1}
        trainable = _data_parallel_trial
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(trainable, train_ds=train_ds, valid_ds=valid_ds, static=static),
        resources,
    )
    tuner = ray.tune.Tuner(
        trainable,
        param_space=_search_space(cfg),
        tune_config=ray.tune.TuneConfig(
            metric=metric, mode=mode, num_samples=cfg.num_samples,
            max_concurrent_trials=concurrency,
            search_alg=BasicVariantGenerator(random_state=cfg.seed),
        ),
        run_config=ray.tune.RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=ray.tune.FailureConfig(max_failures=cfg.max_failures),
            verbose=0,
        ),
    )
    logger.info("tuning %d trial(s), %s, up to %d at once", cfg.num_samples, parallelism,
                concurrency)
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    errors = [r.error for r in results if r.error is not None]
    if errors and len(errors) == len(results):
        raise RuntimeError(f"every trial failed; first error: {errors[0]}")
    best = grid.get_best_result(metric=metric, mode=mode, scope="last")
    if best.checkpoint is None:
        raise RuntimeError("the best trial left no checkpoint")
    out_dir = Path(tempfile.mkdtemp(prefix="raypipe-model-"))
    with best.checkpoint.as_directory() as d:
        (out_dir / MODEL_FILE).write_bytes((Path(d) / MODEL_FILE).read_bytes())
    trials = [
        {**{k: v for k, v in (r.config or {}).items()},
         metric: (r.metrics or {}).get(metric), "error": str(r.error) if r.error else None}
        for r in results
    ]
    best_metrics = best.metrics or {}
    return TrainResult(
        booster_path=out_dir / MODEL_FILE,
        metric=metric,
        best_score=float(best_metrics[metric]),
        best_params={**params, **(best.config or {})},
        best_iteration=int(best_metrics.get("best_iteration", -1)),
        parallelism=parallelism,
        trials=trials,
        experiment_path=grid.experiment_path,
    )
