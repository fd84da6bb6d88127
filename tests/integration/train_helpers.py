"""What the training integration tests share: a sweep over featurised splits (the ``splits``
fixture in conftest.py) and the validation log loss of a saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import TrainConfig
from pipelines.families import load_predictor
from pipelines.families.linear import LinearFamily
from pipelines.stages.train import LABEL_COLUMN, tune_models


def sweep(splits: tuple[Any, Any], tmp_path: Path, cfg: TrainConfig, name: str = "t",
          resume: bool = False) -> Any:
    """A binary sweep of ``cfg`` over ``splits``, its experiment stored under ``tmp_path``."""
    train, valid = splits
    return tune_models(train, valid, cfg, task="binary", num_classes=2,
                       storage_path=str(tmp_path), run_name=name, resume=resume)


def valid_logloss(splits: tuple[Any, Any], model_dir: Path) -> float:
    """The log loss of the model saved in ``model_dir`` on the validation split."""
    from pipelines.families.base import score

    df = splits[1].to_pandas()
    X = df.drop(columns=[LABEL_COLUMN]).to_numpy(dtype=np.float64)
    return score("logloss", "binary", df[LABEL_COLUMN].to_numpy(),
                 load_predictor(model_dir).predict_raw(X))


class InterruptedOnce(LinearFamily):
    """The linear family, whose first fit after ``marker`` is created fails: a trial that was
    interrupted. Registered by a test; trial processes get the instance, marker included."""

    name = "interrupted_once"

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def fit(self, params: dict[str, Any], train: Any, valid: Any, ctx: Any) -> Any:
        try:
            self.marker.unlink()
        except FileNotFoundError:
            return super().fit(params, train, valid, ctx)
        raise RuntimeError("interrupted (test)")
