"""MLflow tracking and registry: the only module that talks to MLflow for the runner."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import PipelineConfig
from pipelines.features.pipeline import ColumnKind
from pipelines.model.pyfunc import RaypipeModel
from pipelines.model.spec import (
    MODEL_ARTIFACT,
    PREDICTION_COLUMN,
    PROBABILITY_COLUMN,
    SPEC_ARTIFACT,
    ModelSpec,
    conform_input,
    spec_to_json,
)
from pipelines.storage.location import Where, storage_path

__all__ = [
    "FEATURE_PIPELINE_FILE",
    "NATIVE_MODEL_KEY",
    "configure_tracking",
    "log_artifact",
    "log_native_model",
    "log_pipeline_model",
    "model_signature",
    "register_model",
    "tracking_scope",
]

logger = logging.getLogger(__name__)

_MLFLOW_TYPES: dict[ColumnKind, str] = {
    "float": "double", "bool": "boolean", "string": "string", "datetime": "datetime",
}
NATIVE_MODEL_KEY = "raypipe.native_model_uri"
"""Where a pyfunc model records the URI of its estimator in the family's own flavour."""
FEATURE_PIPELINE_FILE = "feature_pipeline.json"
"""The fitted feature pipeline, as JSON, beside the native model's ``MLmodel``."""
_RUNTIME_PACKAGES = ["mlflow", "xgboost", "pandas", "numpy", "pyarrow", "pydantic"]


@contextmanager
def tracking_scope(cfg: PipelineConfig) -> Iterator[str]:
    """Point MLflow at the run's store for the duration, then put things back.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``; left behind, it would
    send the next pipeline run in the same process to this run's store.
    """
    import mlflow

    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    previous_uri = mlflow.get_tracking_uri()
    try:
        yield configure_tracking(cfg, cfg.tracking_uri)
    finally:
        mlflow.set_tracking_uri(previous_uri)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def configure_tracking(cfg: PipelineConfig, uri: str) -> str:
    """Point MLflow at ``uri`` and the configured experiment; return the experiment id.

    With the embedded default (a SQLite file under the work dir) the artifact folder is
    created next to it, so a fresh checkout needs no server.
    """
    import mlflow

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment_name)
    if exp is None:
        local_store = uri.startswith("sqlite:///") and not cfg.tracking.uri
        exp_id = mlflow.create_experiment(
            cfg.experiment_name, artifact_location=cfg.artifact_location if local_store else None
        )
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


def model_signature(spec: ModelSpec) -> Any:
    """Input: every raw column, optional (missing values are the pipeline's job)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    pipe = spec.pipeline
    columns: list[ColSpec | TensorSpec] = [
        ColSpec(_MLFLOW_TYPES[kind], name, required=False)
        for name, kind in pipe.input_schema.items()
    ]
    inputs = Schema(columns)
    label_type = "double" if pipe.task == "regression" else _label_type(pipe.classes or [])
    outputs: list[ColSpec | TensorSpec] = [ColSpec(label_type, PREDICTION_COLUMN)]
    if pipe.task != "regression":
        outputs.append(ColSpec("double", PROBABILITY_COLUMN))
    if pipe.task == "multiclass":
        outputs += [ColSpec("double", f"{PROBABILITY_COLUMN}_{c}") for c in pipe.classes or []]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def _label_type(classes: list[Any]) -> str:
    if all(isinstance(c, bool) for c in classes):
        return "boolean"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "long"
    if all(isinstance(c, (int, float)) for c in classes):
        return "double"
    return "string"


def package_versions(packages: list[str] | None = None) -> dict[str, str]:
    """Installed versions of the packages a run depends on (lineage)."""
    out = {}
    for pkg in packages or [*_RUNTIME_PACKAGES, "ray", "scikit-learn", "torch"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _pinned(packages: list[str]) -> list[str]:
    """``packages`` pinned to their installed versions (unpinned when not installed)."""
    reqs = []
    for pkg in dict.fromkeys(packages):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def _requirements(model_dir: Path) -> list[str]:
    """raypipe's runtime packages and the ones the saved model's family declares, pinned."""
    from pipelines.families.registry import saved_family

    return _pinned([*_RUNTIME_PACKAGES, *saved_family(model_dir).requirements])


def log_pipeline_model(spec: ModelSpec, model_dir: Path, input_example: pd.DataFrame) -> Any:
    """Log the pipeline + trained model as one pyfunc model in the active run; return its info.

    The ``pipelines`` package travels inside the model (``code_paths``), so loading it needs
    only the pinned requirements, not an installed raypipe. When the model's family has a
    native MLflow flavour, the bare estimator is logged first as its own model (``native``,
    see :func:`log_native_model`), and its URI is recorded in the pyfunc's MLmodel metadata
    and as a tag of its logged model, both under :data:`NATIVE_MODEL_KEY`.
    """
    import mlflow

    package_dir = Path(__file__).resolve().parent
    example = conform_input(input_example, spec)
    native_uri = log_native_model(spec, model_dir, example)
    found = {NATIVE_MODEL_KEY: native_uri} if native_uri else None
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "model_spec.json"
        spec_path.write_text(spec_to_json(spec))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=RaypipeModel(),
            artifacts={SPEC_ARTIFACT: str(spec_path), MODEL_ARTIFACT: str(model_dir)},
            code_paths=[str(package_dir)],
            signature=model_signature(spec),
            input_example=example,
            pip_requirements=_requirements(model_dir),
            metadata=found,
            tags=found,
        )


def log_native_model(spec: ModelSpec, model_dir: Path, raw_example: pd.DataFrame) -> str | None:
    """Log the model in ``model_dir`` in its family's MLflow flavour (``name="native"``) with
    the fitted feature pipeline as ``feature_pipeline.json``; return its ``models:/`` URI, or
    None when the family has no native flavour (:meth:`Family.native_model`).

    Its input is the feature pipeline's output (the features, in ``feature_names`` order),
    its output ``predict_raw``'s: P(class 1), class probabilities or values. Its example and
    signature are the featurised ``raw_example``.
    """
    import importlib

    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from pipelines.families.registry import saved_family

    family = saved_family(model_dir)
    predictor = family.load(model_dir)
    native = family.native_model(predictor, spec.pipeline.feature_names)
    if native is None:
        return None
    features = spec.pipeline.transform(raw_example)
    example: Any = features.to_numpy(np.float64) if native.array_input else features
    signature = infer_signature(example, predictor.predict_raw(features.to_numpy(np.float64)))
    flavour = importlib.import_module(f"mlflow.{native.flavour}")
    info = flavour.log_model(
        native.model, name="native", input_example=example, signature=signature,
        pip_requirements=_pinned(["mlflow", *native.requirements]),
        metadata={"raypipe.feature_pipeline": FEATURE_PIPELINE_FILE,
                  "raypipe.feature_names": list(spec.pipeline.feature_names)},
        **native.log_args,
    )
    with tempfile.TemporaryDirectory() as tmp:  # next to MLmodel, where a user looks first
        pipeline_path = Path(tmp) / FEATURE_PIPELINE_FILE
        pipeline_path.write_text(json.dumps(spec.pipeline.model_dump(mode="json"), indent=2))
        MlflowClient().log_model_artifact(info.model_id, str(pipeline_path))
    logger.info("logged the %s model in MLflow's %s flavour: %s", family.name, native.flavour,
                info.model_uri)
    return str(info.model_uri)


def register_model(model_uri: str, name: str, alias: str, tags: dict[str, str]) -> str:
    """Register ``model_uri`` under ``name``, point ``alias`` at it; return the version."""
    import mlflow
    from mlflow import MlflowClient

    # The version names its estimator in the family's own flavour, where a registry user looks.
    native = (mlflow.models.get_model_info(model_uri).metadata or {}).get(NATIVE_MODEL_KEY)
    mv = mlflow.register_model(model_uri, name,
                               tags={**tags, **({NATIVE_MODEL_KEY: native} if native else {})})
    MlflowClient().set_registered_model_alias(name, alias, mv.version)
    logger.info("registered %s version %s as @%s", name, mv.version, alias)
    return str(mv.version)


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def source_tags(sha: str | None) -> dict[str, str]:
    """MLflow's standard source tags: the commit (without raypipe's ``-dirty`` mark, which the
    ``raypipe.git_dirty`` tag keeps) and the program that started the run (``raypipe``, a
    ``ray_jobs`` entrypoint), so MLflow's UI shows both as it does for its own runs."""
    import sys

    tags = {"mlflow.source.name": Path(sys.argv[0]).name or "raypipe"}
    if sha:
        tags["mlflow.source.git.commit"] = sha.removesuffix("-dirty")
    return tags


def curve_metric(metric: str) -> str:
    """The child runs' per-round validation metric: its history is the trial's learning curve
    (``valid_<metric>`` stays the trial's score, one value)."""
    return f"valid_{metric}_by_round"


def log_trials(trials: list[dict[str, Any]], metric: str) -> None:
    """Every Tune trial as a child run of the active run: family, parameters, score, status,
    and its validation metric per round (every 10 boosting rounds, every epoch) as a metric
    history with the round as step, so MLflow's UI draws each trial's learning curve. The
    children carry the parent's ``mlflow.source.*`` tags."""
    import time

    import mlflow
    from mlflow.entities import Metric

    parent = mlflow.active_run()
    inherited = {k: v for k, v in (mlflow.get_run(parent.info.run_id).data.tags.items()
                                   if parent else ()) if k.startswith("mlflow.source.")}
    client = mlflow.MlflowClient()
    for t in trials:
        name = f"trial-{t.get('trial_id') or len(trials)}-{t.get('family')}"
        with mlflow.start_run(run_name=name, nested=True) as child:
            mlflow.log_params({"family": t.get("family"), **(t.get("params") or {})})
            mlflow.set_tags({**inherited, "raypipe.trial_status": str(t.get("status"))})
            if t.get(metric) is not None:
                mlflow.log_metric(f"valid_{metric}", float(t[metric]))
            now = int(time.time() * 1000)
            curve = [Metric(curve_metric(metric), float(v), now, int(r))
                     for r, v in t.get("curve") or []]
            for i in range(0, len(curve), 1000):  # MLflow's limit per batch
                client.log_batch(child.info.run_id, metrics=curve[i:i + 1000])


def log_dataset(path: str, fingerprint: str, name: str, rows: int) -> None:
    """Record the input data set with its content digest as the run's training input.

    The location is logged with credentials masked (a database URL's password, a signed
    object-store URL): MLflow shows it to everyone who can read the experiment.
    """
    import warnings

    from pipelines.redact import redact

    path = redact(path)

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": same class twice
        warnings.simplefilter("ignore", UserWarning)
        try:
            source = resolve_dataset_source(path)
        except MlflowException:  # no MLflow source type for sqlite:// or postgresql:// URLs
            from mlflow.data.code_dataset_source import CodeDatasetSource

            source = CodeDatasetSource(tags={"uri": path})
    dataset = MetaDataset(source=source, name=name, digest=fingerprint[:36])  # type: ignore[abstract]
    mlflow.log_input(dataset, context="training", tags={"rows": str(rows)})


def log_artifact(location: Where, artifact_path: str | None = None) -> None:
    """Log a file of the run's state (local or in an object store) to the active MLflow run."""
    import mlflow

    with storage_path(location).local_copy() as local:
        mlflow.log_artifact(str(local), artifact_path)


def log_json(obj: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(obj, indent=2, default=str), artifact_file)
