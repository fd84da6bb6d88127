"""The ``train`` section: model families, their settings and search spaces, the Tune sweep."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.config.base import _Section
from pipelines.families.registry import family_names

__all__ = ["Choice", "FamilySettings", "LinearSettings", "LogUniform", "MLPSettings", "RandInt",
           "Search", "SearchDim", "TrainConfig", "Uniform", "XGBoostSettings"]


class Uniform(_Section):
    type: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self) -> Uniform:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class LogUniform(_Section):
    type: Literal["loguniform"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> LogUniform:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class RandInt(_Section):
    type: Literal["randint"]
    low: int
    high: int = Field(description="Exclusive upper bound.")

    @model_validator(mode="after")
    def _check(self) -> RandInt:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class Choice(_Section):
    type: Literal["choice"]
    values: list[float | int | str | bool] = Field(min_length=1)


SearchDim = Annotated[Uniform | LogUniform | RandInt | Choice, Field(discriminator="type")]

def _space(**dims: dict[str, Any]) -> dict[str, Any]:
    return dict(dims)


class FamilySettings(_Section):
    """One family's ``train.<name>`` section: fixed parameters and the sweep's search space.

    The section of a family added with ``register_family`` (see the README's "Extending"):
    ``params`` reach its ``fit`` under each trial's sampled ``search_space`` values.
    """

    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Fixed parameters applied to every trial.",
    )
    search_space: dict[str, SearchDim] = Field(
        default_factory=dict, description="Parameters each trial samples (Ray Tune).",
    )

    @field_validator("search_space", mode="before")
    @classmethod
    def _empty_space(cls, v: Any) -> Any:
        return {} if v is None else v


class XGBoostSettings(FamilySettings):
    """XGBoost family: fixed parameters, search space and boosting rounds."""

    search_space: dict[str, SearchDim] = Field(
        default_factory=lambda: _space(
            eta={"type": "loguniform", "low": 0.03, "high": 0.3},
            max_depth={"type": "randint", "low": 3, "high": 8},
            subsample={"type": "uniform", "low": 0.7, "high": 1.0},
            min_child_weight={"type": "choice", "values": [1, 5]},
        ),
        validate_default=True,
    )
    num_boost_round: int = Field(200, ge=1)
    early_stopping_rounds: int = Field(20, ge=1)
    checkpoint_every: int = Field(
        50, ge=1, description="Data-parallel trials: rank 0 checkpoints the booster every this "
        "many rounds, so a worker group restarted after a failure (train.max_failures) "
        "continues from the last checkpoint instead of from round 0.",
    )


class MLPSettings(FamilySettings):
    """PyTorch MLP family (needs the ``torch`` extra): architecture, optimiser, stopping."""

    search_space: dict[str, SearchDim] = Field(
        default_factory=lambda: _space(
            lr={"type": "loguniform", "low": 1e-3, "high": 1e-2},
            hidden_size={"type": "choice", "values": [32, 64, 128]},
            dropout={"type": "uniform", "low": 0.0, "high": 0.3},
        ),
        validate_default=True,
    )
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1, description="Epochs without a better validation loss.")
    batch_size: int = Field(512, ge=1)
    num_layers: int = Field(2, ge=1)
    checkpoint_every: int = Field(
        5, ge=1, description="Data-parallel trials: rank 0 checkpoints the training state "
        "(weights, optimiser, early-stopping counters) every this many epochs, so a worker "
        "group restarted after a failure (train.max_failures) continues from the last "
        "checkpoint instead of from epoch 0.",
    )


class LinearSettings(FamilySettings):
    """Linear baseline: logistic regression (classification) or ridge (regression)."""

    search_space: dict[str, SearchDim] = Field(
        default_factory=lambda: _space(C={"type": "loguniform", "low": 0.01, "high": 10.0}),
        validate_default=True,
        description="C is the inverse regularisation strength (ridge alpha = 1/C).",
    )


_FAMILY_SECTIONS = (XGBoostSettings, MLPSettings, LinearSettings)


def _default_families() -> list[str]:
    return ["xgboost"]


Metric = Literal["logloss", "auc", "accuracy", "rmse", "mae"]
Search = Literal["random", "optuna", "hyperopt"]


class TrainConfig(_Section):
    """Model families, search spaces, the Tune sweep and how trials are scaled.

    A family added with ``register_family`` has its ``train.<name>`` section too (a
    :class:`FamilySettings`), kept as an extra field: only registered family names are allowed
    there, so a misspelt field is still refused.
    """

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, FamilySettings] = Field(init=False)

    families: list[str] = Field(
        default_factory=_default_families, min_length=1,
        description="Families the sweep compares; num_samples trials each (built in: xgboost, "
        "mlp, linear; more with register_family or a raypipe.families entry point).",
    )
    xgboost: XGBoostSettings = Field(default_factory=XGBoostSettings)
    mlp: MLPSettings = Field(default_factory=MLPSettings)
    linear: LinearSettings = Field(default_factory=LinearSettings)
    num_samples: int = Field(4, ge=1, description="Tune trials per family.")
    metric: Metric | None = Field(
        None, description="Validation metric that ranks trials (and families). "
        "Default: logloss (classification), rmse (regression).",
    )
    search: Search = Field(
        "random", description="How trials choose their hyperparameters: random (Tune's random "
        "sampling), optuna or hyperopt (TPE, seeded with train.seed; a TPE searcher per family, "
        "each fed only its own family's trials, so every family gets num_samples trials). "
        "optuna needs the optuna package, hyperopt the hyperopt package. With TPE a sweep is "
        "exactly reproducible with max_concurrent_trials: 1; with more trials at once a "
        "suggestion depends on which earlier trials have finished.",
    )
    scheduler: Literal["fifo", "asha"] = Field(
        "fifo", description="asha stops bad trials early from their per-round reports.",
    )
    grace_period: int = Field(
        2, ge=1, description="ASHA: reports (every 10 rounds or 1 epoch) before a trial may stop.",
    )
    num_workers: int = Field(
        1, ge=1, description="Ray Train workers per trial. 1 trains in-process inside the Tune "
        "trial (no Ray Train start-up); >1 runs a data-parallel Ray Train run per trial "
        "(XGBoostTrainer or TorchTrainer; the linear family always trains in-process).",
    )
    parallelism: Literal["auto", "in_process", "data_parallel"] = Field(
        "auto", description="auto: data_parallel when num_workers > 1, else in_process.",
    )
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool = False
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Default: as many as the cluster's CPUs allow.",
    )
    max_failures: int = Field(1, ge=0, description="Retries of a failed trial or Train run.")
    refit: bool = Field(
        True, description="Refit the winning configuration on train + valid, for the rounds / "
        "epochs early stopping chose (in-process sweeps only). The validation score reported "
        "stays the sweep's.",
    )
    cv_folds: int = Field(
        5, ge=1, description="Small data sets: each in-process trial is scored by k-fold "
        "cross-validation over train + valid (stratified for classification) and the winner "
        "refitted on train + valid, since a validation split of a few hundred rows ranks trials "
        "mostly by noise. Needs refit; never used with the time split (folds would train on "
        "the future). 1 turns it off.",
    )
    cv_max_rows: int = Field(
        20_000, ge=0, description="Cross-validate only while train + valid hold at most this "
        "many rows; above it, the validation split alone ranks trials.",
    )
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _only_family_extras(cls, data: Any) -> Any:
        if isinstance(data, dict):
            extra = sorted(set(data) - set(cls.model_fields))
            unknown = [k for k in extra if k not in family_names()]
            if unknown:  # the error extra="forbid" gives, at the field's own location
                raise ValidationError.from_exception_data(cls.__name__, [
                    {"type": "extra_forbidden", "loc": (k,), "input": data[k]} for k in unknown])
        return data

    @field_validator("families")
    @classmethod
    def _known_unique_families(cls, v: list[str]) -> list[str]:
        known = family_names()
        for name in v:
            if name not in known:
                raise ValueError(f"unknown model family {name!r}; choose from {', '.join(known)}")
            field = cls.model_fields.get(name)
            if field is not None and field.annotation not in _FAMILY_SECTIONS:
                raise ValueError(f"model family {name!r} has the name of a train setting; "
                                 "register it under another name")
        if len(set(v)) != len(v):
            raise ValueError("lists a family twice")
        return v

    def family_settings(self, name: str) -> FamilySettings:
        """The ``train.<name>`` section (defaults where the config has none)."""
        section = getattr(self, name, None) if name in type(self).model_fields else None
        if section is None:
            section = (self.__pydantic_extra__ or {}).get(name) or FamilySettings()
        return section
