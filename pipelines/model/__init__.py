"""The deployable model: model spec, MLflow pyfunc wrapper, loaded model, fast path, input schema.

:mod:`~pipelines.model.spec` (what prediction needs besides the weights, and
:func:`predict_frame`), :mod:`~pipelines.model.pyfunc` (the MLflow wrapper),
:mod:`~pipelines.model.engine` (a registered version loaded for batch inference, serving and
monitoring), :mod:`~pipelines.model.fastpath` (the compiled per-row path) and
:mod:`~pipelines.model.schema` (the input schema as validators).

``RaypipeModel`` is re-exported lazily (PEP 562): the wrapper is the one module that imports
MLflow, and batch actors that unpickle a loaded model import this package without paying for
MLflow. The same lookup serves models logged before the wrapper left ``pipelines/model.py``:
they pickled it as ``pipelines.model.RaypipeModel``.
"""

from typing import TYPE_CHECKING, Any

from pipelines.model.engine import (
    LoadedModel,
    ModelRef,
    Outputs,
    complete_columns,
    frame_to_columns,
    load_model,
    load_ref,
    output_names,
    parse_model_uri,
    predict_columns,
    resolve_model,
)
from pipelines.model.fastpath import Columns, CompiledPipeline
from pipelines.model.schema import frame_problems, predict_body_model, row_model, row_reasons
from pipelines.model.spec import (
    MODEL_ARTIFACT,
    PREDICTION_COLUMN,
    PROBABILITY_COLUMN,
    SPEC_ARTIFACT,
    ModelSpec,
    conform_input,
    load_spec,
    predict_frame,
    spec_to_json,
)

if TYPE_CHECKING:
    from pipelines.model.pyfunc import RaypipeModel

__all__ = [
    "MODEL_ARTIFACT",
    "PREDICTION_COLUMN",
    "PROBABILITY_COLUMN",
    "SPEC_ARTIFACT",
    "Columns",
    "CompiledPipeline",
    "LoadedModel",
    "ModelRef",
    "ModelSpec",
    "Outputs",
    "RaypipeModel",
    "complete_columns",
    "conform_input",
    "frame_problems",
    "frame_to_columns",
    "load_model",
    "load_ref",
    "load_spec",
    "output_names",
    "parse_model_uri",
    "predict_body_model",
    "predict_columns",
    "predict_frame",
    "resolve_model",
    "row_model",
    "row_reasons",
    "spec_to_json",
]


def __getattr__(name: str) -> Any:
    if name == "RaypipeModel":
        from pipelines.model.pyfunc import RaypipeModel

        return RaypipeModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
