"""The Serve app's wire protocols, one module each, over bytes and validated values.

:mod:`~pipelines.serving.protocols.raypipe` (``/predict``),
:mod:`~pipelines.serving.protocols.mlflow` (``/invocations``) and
:mod:`~pipelines.serving.protocols.kserve_v2` (``/v2``) share
:mod:`~pipelines.serving.protocols.common` (errors, content type, size and auth checks).
"""

from pipelines.serving.protocols.common import (
    MAX_ERRORS,
    RequestError,
    bearer_ok,
    check_content_type,
    check_size,
    read_token,
)
from pipelines.serving.protocols.kserve_v2 import (
    V2Request,
    parse_v2_infer,
    v2_infer_response,
    v2_model_metadata,
    v2_output_datatype,
)
from pipelines.serving.protocols.mlflow import INVOCATIONS_TYPES, invocations_response, parse_invocations
from pipelines.serving.protocols.raypipe import (
    explanations_body,
    parse_explain,
    parse_predict,
    predict_response,
)

__all__ = [
    "INVOCATIONS_TYPES",
    "MAX_ERRORS",
    "RequestError",
    "V2Request",
    "bearer_ok",
    "check_content_type",
    "check_size",
    "explanations_body",
    "invocations_response",
    "parse_explain",
    "parse_invocations",
    "parse_predict",
    "parse_v2_infer",
    "predict_response",
    "read_token",
    "v2_infer_response",
    "v2_model_metadata",
    "v2_output_datatype",
]
