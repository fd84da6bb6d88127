"""The MLflow pyfunc wrapper around :func:`pipelines.model.spec.predict_frame`.

Its own module because it is the one piece of the model that needs MLflow at import time. It
imports the spec, never the other way round. Models logged before the package split pickled it
as ``pipelines.pyfunc_model.RaypipeModel`` or ``pipelines.model.RaypipeModel``; both still
resolve here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from pipelines.families.registry import saved_family
from pipelines.model.spec import MODEL_ARTIFACT, SPEC_ARTIFACT, load_spec, predict_frame

__all__ = ["RaypipeModel"]


class RaypipeModel(PythonModel):
    """MLflow pyfunc wrapper: raw rows in, predictions out."""

    def load_context(self, context: Any) -> None:
        self.spec = load_spec(context.artifacts[SPEC_ARTIFACT])
        model_dir = Path(context.artifacts[MODEL_ARTIFACT])
        self.family = saved_family(model_dir)  # kept: explanations ask the family
        self.predictor = self.family.load(model_dir)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return predict_frame(self.spec, self.predictor, model_input)
