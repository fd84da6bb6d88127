"""raypipe's own protocol: ``POST /predict`` with ``{"instances": [{column: value}]}``.

The request body is validated by the pydantic model the input schema generates
(:func:`pipelines.model.schema.predict_body_model`), so a bad field is a 422 naming it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from pipelines.features.pipeline import FeaturePipeline
from pipelines.model.engine import LoadedModel, Outputs
from pipelines.model.explain import Explanation
from pipelines.model.fastpath import Columns
from pipelines.model.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN
from pipelines.serving.protocols.common import (
    MAX_ERRORS,
    RequestError,
    check_json_containers,
    field_path,
    nan_to_none,
)

__all__ = ["explanations_body", "parse_explain", "parse_predict", "predict_response"]


def parse_predict(raw: bytes, body: type[BaseModel], pipeline: FeaturePipeline,
                  max_rows: int) -> tuple[Columns, int]:
    """``{"instances": [{column: value}]}`` → columns; 400/413/422 naming the field.

    ``body`` is :func:`pipelines.model.schema.predict_body_model` of the pipeline.
    """
    width = len(pipeline.input_schema)
    check_json_containers(raw, max_rows, width)
    if len(raw) > _WIDTH_CHECK_BYTES:
        _check_row_widths(raw, width, max_rows)
    try:
        req = body.model_validate_json(raw)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise RequestError(400, f"request body is not valid JSON: {errors[0]['msg']}") from None
        if any(e["type"] == "too_long" and e["loc"] == ("instances",) for e in errors):
            raise RequestError(413, f"more than the limit of {max_rows} rows per request") from None
        if any(e["loc"] in ((), ("instances",)) for e in errors):
            raise RequestError(
                422, "the body must be an object with exactly one key, 'instances', a non-empty "
                     "list of row objects",
                [{"field": field_path(e["loc"]) or "instances", "message": e["msg"]} for e in errors[:5]],
            ) from None
        fields = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors]
        raise RequestError(
            422, "invalid instances: " + "; ".join(f"{e['field']}: {e['message']}"
                                                   for e in fields[:5]),
            fields[:MAX_ERRORS],
        ) from None
    rows = req.instances  # type: ignore[attr-defined]
    columns: Columns = {c: [getattr(r, c) for r in rows] for c in pipeline.input_schema}
    return columns, len(rows)


_WIDTH_CHECK_BYTES = 64 * 1024
"""Bodies above this size have their rows' widths checked before pydantic sees them."""


def _check_row_widths(raw: bytes, columns: int, max_rows: int) -> None:
    """Refuse more rows than the limit, or a row with more keys than the model has columns,
    before validation.

    Validation reports every unknown key of every row, and every item of the list even past
    its length limit: one row with 400,000 unknown keys made 400,000 errors and held the
    replica's interpreter (its GIL) for 3 s, a 10 MB list of 2.6 million ``[0]`` rows 19 s.
    A C-speed JSON decode and a length per row bound the refusal by the body's size. Invalid
    JSON (too deep included) is left to the validator, which names it.
    """
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return
    rows = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return
    if len(rows) > max_rows:
        raise RequestError(413, f"{len(rows)} rows is over the limit of {max_rows} per request")
    for i, row in enumerate(rows):
        if isinstance(row, dict) and len(row) > columns:
            raise RequestError(422, f"instances.{i} has {len(row)} keys; the model has "
                                    f"{columns} input columns (unknown keys are refused)")


def predict_response(outputs: Outputs, model: LoadedModel) -> dict[str, Any]:
    """The /predict answer: labels, probabilities (classification) and the model version."""
    task = model.pipeline.task
    body: dict[str, Any] = {
        "predictions": nan_to_none(outputs[PREDICTION_COLUMN].tolist()),
        "model": {"name": model.name, "version": model.version},
    }
    if task == "binary":
        body["probabilities"] = nan_to_none(outputs[PROBABILITY_COLUMN].tolist())
    elif task == "multiclass":
        classes = model.pipeline.classes or []
        per_class = {str(c): outputs[f"{PROBABILITY_COLUMN}_{c}"].tolist() for c in classes}
        n = len(outputs[PREDICTION_COLUMN])
        body["probabilities"] = [{c: v[i] for c, v in per_class.items()} for i in range(n)]
    return body




_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


def parse_explain(value: str | None) -> bool:
    """The ``explain`` query parameter of ``/predict``: absent or false, or true; else 400."""
    if value is None:
        return False
    v = value.strip().lower()
    if v in _TRUE or v in _FALSE:
        return v in _TRUE
    raise RequestError(400, f"query parameter explain must be true or false, not {value[:40]!r}")


def explanations_body(explanation: Explanation) -> dict[str, Any]:
    """``explanations``: per row, each input column's attribution and the bias.

    They add up to the margin named by ``explanation_scale`` (the log-odds of the positive
    class, the class scores before the softmax, the regressed value). Multiclass rows give one
    attribution object per class.
    """
    cols = explanation.columns
    values, bias = explanation.values.tolist(), explanation.bias.tolist()
    rows: list[dict[str, Any]]
    if explanation.classes is None:
        rows = [{"bias": b, "attributions": dict(zip(cols, v, strict=True))}
                for v, b in zip(values, bias, strict=True)]
    else:
        names = [str(c) for c in explanation.classes]
        rows = [{"bias": dict(zip(names, b, strict=True)),
                 "attributions": {c: dict(zip(cols, per, strict=True))
                                  for c, per in zip(names, v, strict=True)}}
                for v, b in zip(values, bias, strict=True)]
    return {"explanations": nan_to_none(rows), "explanation_scale": explanation.scale}
