"""The MLflow pyfunc wrapper around :func:`pipelines.model.predict_frame`.

Apart from :mod:`pipelines.model` because it is the one piece that needs MLflow at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from pipelines.families import load_predictor
from pipelines.model import MODEL_ARTIFACT, SPEC_ARTIFACT, load_spec, predict_frame

__all__ = ["RaypipeModel"]


class RaypipeModel(PythonModel):
    """MLflow pyfunc wrapper: raw rows in, predictions out."""

    def load_context(self, context: Any) -> None:
        self.spec = load_spec(context.artifacts[SPEC_ARTIFACT])
        self.predictor = load_predictor(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return predict_frame(self.spec, self.predictor, model_input)
