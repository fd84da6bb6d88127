"""What every model family provides, and the validation metrics they are compared on."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "METRICS",
    "BaseFamily",
    "Family",
    "FitContext",
    "FitResult",
    "NativeModel",
    "Predictor",
    "Standardizer",
    "TrainData",
    "default_metric",
    "higher_is_better",
    "score",
]

# Validation metrics a sweep can optimise; all families report the same ones.
METRICS: dict[str, bool] = {  # name -> higher is better
    "logloss": False, "auc": True, "accuracy": True, "rmse": False, "mae": False,
}
_CLASSIFICATION = {"logloss", "auc", "accuracy"}


def default_metric(task: str) -> str:
    return "rmse" if task == "regression" else "logloss"


def higher_is_better(metric: str) -> bool:
    return METRICS[metric]


def check_metric(metric: str, task: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"train.metric {metric!r} is not one of {sorted(METRICS)}")
    if (metric in _CLASSIFICATION) != (task != "regression"):
        raise ValueError(f"train.metric {metric!r} does not fit a {task} task")


def score(metric: str, task: str, y: np.ndarray, raw: np.ndarray) -> float:
    """Score raw model output: P(class 1) (binary), class probabilities (multiclass), values.

    Log loss and accuracy are computed here (sklearn's definitions); sklearn is imported only
    for ROC AUC, so that a fresh trial worker does not pay its ~0.5 s import for the rest.
    """
    if task == "regression":
        if metric == "rmse":
            return float(np.sqrt(np.mean((y - raw) ** 2)))
        return float(np.mean(np.abs(y - raw)))
    if task == "binary":
        p = np.clip(raw.reshape(-1), 1e-15, 1 - 1e-15)
        if metric == "logloss":
            return float(-np.mean(np.where(y == 1, np.log(p), np.log(1 - p))))
        if metric == "auc":
            from sklearn import metrics as m

            return float(m.roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
        return float(np.mean((p >= 0.5) == y))
    proba = np.clip(raw, 1e-15, 1)
    proba = proba / proba.sum(axis=1, keepdims=True)
    labels = list(range(proba.shape[1]))
    if metric == "logloss":
        return float(-np.mean(np.log(proba[np.arange(len(y)), y.astype(np.int64)])))
    if metric == "auc":
        from sklearn import metrics as m

        return float(m.roc_auc_score(y, proba, labels=labels, multi_class="ovr"))
    return float(np.mean(proba.argmax(axis=1) == y))


@dataclass(frozen=True)
class TrainData:
    """One split as arrays: features (float, NaN for missing) and encoded labels."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]


@dataclass
class FitContext:
    """What a fit needs besides the data and the trial's hyperparameters."""

    task: str
    num_classes: int
    metric: str
    report: Callable[[dict[str, float]], None]
    seed: int = 0
    threads: int = 1
    use_gpu: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    checkpoint: Callable[[Any, dict[str, float]], None] | None = None
    """Set by a Ray Train worker: report ``metrics`` with the model so far as a checkpoint,
    instead of ``report``, so a restarted worker group continues from it."""
    init_model: Any = None
    """A model to continue training (the checkpoint a restarted worker group resumes from)."""


@dataclass
class FitResult:
    model: Any
    score: float
    iterations: int


@dataclass(frozen=True)
class NativeModel:
    """A trained model in one of MLflow's own flavours, logged next to raypipe's pyfunc.

    It takes the *featurised* rows (the fitted feature pipeline's output columns, floats with
    NaN for missing) and gives what :meth:`Predictor.predict_raw` gives, so a user can load it
    with ``mlflow.<flavour>.load_model`` (or a serving runtime that reads that flavour) and
    apply the feature pipeline, logged with it as JSON, elsewhere. Loading it imports no
    raypipe code.
    """

    flavour: str
    """The MLflow flavour module that logs and loads it: ``mlflow.<flavour>`` (``xgboost``,
    ``sklearn``, ``pytorch``, ...)."""
    model: Any
    """What ``mlflow.<flavour>.log_model`` takes as its first argument."""
    requirements: tuple[str, ...] = ()
    """pip packages loading it needs besides MLflow (pinned to the installed versions)."""
    array_input: bool = False
    """The model takes one float64 array (a tensor-based flavour) rather than a frame whose
    columns are the feature names: its input example and signature are an array."""
    log_args: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments of the flavour's ``log_model`` (e.g. ``pyfunc_predict_fn``)."""


class Predictor(Protocol):
    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """P(class 1) for binary, (n, k) class probabilities for multiclass, else values."""
        ...


class Family(Protocol):
    """A model family: what the sweep, the registry and the model loader ask of one.

    Subclass :class:`BaseFamily` for the defaults of the optional parts.
    """

    name: str
    """The key in ``train.families`` and the ``train.<name>`` settings section."""
    libraries: tuple[str, ...]
    """Modules its fit imports, which a fresh worker can load ahead of the data."""
    input_dtype: type[np.floating]
    """The float type its fit reads features in (``TrainData.X`` from a Dataset)."""
    requirements: tuple[str, ...]
    """pip packages a saved model needs besides raypipe's runtime (logged with the model)."""
    data_parallel: str | None
    """The Ray Train backend of a data-parallel trial (``xgboost``, ``torch``), or None: the
    family has nothing to parallelise and fits inside the trial even with ``num_workers > 1``."""

    def fit(self, params: dict[str, Any], train: TrainData, valid: TrainData,
            ctx: FitContext) -> FitResult: ...

    def save(self, model: Any, directory: Path) -> None: ...

    def load(self, directory: Path) -> Predictor: ...

    def importances(self, predictor: Any, feature_names: list[str]) -> dict[str, float]:
        """Per-feature importance of a loaded model (what :meth:`load` returned)."""
        ...

    def native_model(self, predictor: Any, feature_names: list[str]) -> NativeModel | None:
        """The loaded model (what :meth:`load` returned) in MLflow's flavour for its library,
        predicting exactly what ``predictor.predict_raw`` does from the featurised columns
        ``feature_names``; None: the family has no such flavour (only the pyfunc is logged)."""
        ...

    def contributions(self, predictor: Any, X: np.ndarray) -> np.ndarray | None:
        """Per-row attributions of the featurised rows ``X`` to the model's raw output.

        Shape ``(n, k + 1)``, or ``(n, classes, k + 1)`` for a model with one output per class;
        the last entry is the bias. Each row sums to the margin (the output before the link
        function: log-odds, class scores, the regressed value). None: the family cannot
        attribute its predictions exactly, and says so rather than approximate.
        """
        ...

    def fixed_iterations(self, settings: dict[str, Any], iterations: int) -> dict[str, Any]:
        """``settings`` changed to fit exactly ``iterations`` rounds or epochs, without early
        stopping: the refit of the winner on train + valid uses what the sweep chose."""
        ...


class BaseFamily:
    """Defaults for a family's optional parts; a new family subclasses this and writes
    ``name``, :meth:`fit`, :meth:`save` and :meth:`load`."""

    name: str = ""
    libraries: tuple[str, ...] = ()
    input_dtype: type[np.floating] = np.float64
    requirements: tuple[str, ...] = ()
    data_parallel: str | None = None
    thread_invariant: bool = False
    """Its CPU fit gives the same model bytes with any thread count, so the refit of the winner
    may take every CPU of a node without the model depending on the cluster's size. Set it
    only when a test proves it (XGBoost's hist does; torch's kernels do not promise it)."""

    def importances(self, predictor: Any, feature_names: list[str]) -> dict[str, float]:
        return {}

    def native_model(self, predictor: Any, feature_names: list[str]) -> NativeModel | None:
        return None

    def contributions(self, predictor: Any, X: np.ndarray) -> np.ndarray | None:
        return None

    def __eq__(self, other: object) -> bool:
        # Families travel to trials and workers by pickle: a copy is the same family.
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    def fixed_iterations(self, settings: dict[str, Any], iterations: int) -> dict[str, Any]:
        return settings


@dataclass(frozen=True)
class Standardizer:
    """Missing-value fill and z-scaling for the families that need it (linear, MLP).

    Fitted on the training features of the trial, stored as JSON with the model.
    """

    fill: list[float]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, X: np.ndarray, scale: bool = True) -> Standardizer:
        """``scale=False``: fill only (the feature pipeline has scaled the features already)."""
        with np.errstate(all="ignore"):
            fill = np.nanmedian(X, axis=0) if len(X) else np.zeros(X.shape[1])
        fill = np.where(np.isfinite(fill), fill, 0.0)
        filled = np.where(np.isnan(X), fill, X)
        mean, std = filled.mean(axis=0), filled.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        if not scale:
            mean, std = np.zeros_like(mean), np.ones_like(std)
        return cls(fill.tolist(), mean.tolist(), std.tolist())

    def apply(self, X: np.ndarray) -> np.ndarray:
        fill, mean, std = (np.asarray(v) for v in (self.fill, self.mean, self.std))
        return (np.where(np.isnan(X), fill, X) - mean) / std

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"fill": self.fill, "mean": self.mean, "std": self.std}))

    @classmethod
    def load(cls, path: Path) -> Standardizer:
        return cls(**json.loads(path.read_text()))
