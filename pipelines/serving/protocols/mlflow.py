"""MLflow's scoring protocol: ``POST /invocations`` as ``mlflow models serve`` answers it.

JSON (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``), CSV or Parquet in,
``{"predictions": [...]}`` out. MLflow is imported inside the functions: the module loads in a
replica before the first request without it.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from pipelines.features.pipeline import FeaturePipeline
from pipelines.model.engine import LoadedModel, Outputs, complete_columns, frame_to_columns, output_names
from pipelines.model.fastpath import Columns
from pipelines.model.schema import frame_problems
from pipelines.model.spec import PREDICTION_COLUMN, ModelSpec
from pipelines.serving.protocols.common import (
    MAX_ERRORS,
    RequestError,
    check_content_type,
    check_json_containers,
)

__all__ = ["INVOCATIONS_TYPES", "invocations_response", "parse_invocations"]

INVOCATIONS_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")


def parse_invocations(raw: bytes, content_type: str | None, model: LoadedModel,
                      max_rows: int) -> tuple[Columns, int]:
    """The MLflow scoring protocol: a JSON body with one of ``dataframe_split``,
    ``dataframe_records``, ``instances`` or ``inputs`` (and optionally ``params``, ignored as
    the model takes none), or a CSV or Parquet frame.

    The frame is built without MLflow's schema casts, which turn a missing bool into False and,
    for ``instances``/``inputs``, a missing string into the text "None"; the values are then
    checked and converted column by column, as for every other protocol.
    """
    import pandas as pd
    from mlflow.pyfunc import scoring_server as mlflow_scoring
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    media = check_content_type(content_type, INVOCATIONS_TYPES)
    try:
        if media == "text/csv":
            frame = _read_csv(raw, model.pipeline)
        elif media == "application/vnd.apache.parquet":
            frame = _read_parquet(raw, model.pipeline, max_rows)
        else:
            check_json_containers(raw, max_rows, len(model.pipeline.input_schema))
            try:
                decoded = json.loads(raw)
            except (ValueError, RecursionError) as err:
                raise RequestError(400, f"request body is not valid JSON: {err}") from None
            if not isinstance(decoded, dict):
                raise RequestError(400, mlflow_scoring.REQUIRED_INPUT_FORMAT
                                   + f". Received {type(decoded).__name__}.")
            keys = set(decoded) & mlflow_scoring.SUPPORTED_FORMATS
            unknown = set(decoded) - mlflow_scoring.SUPPORTED_FORMATS - {"params"}
            if unknown or len(keys) != 1:
                raise RequestError(
                    400, mlflow_scoring.REQUIRED_INPUT_FORMAT + f". Received {sorted(decoded)}.",
                    [{"field": k, "message": "unknown key"} for k in sorted(unknown)],
                )
            key = keys.pop()
            data = decoded[key]
            _check_row_count(data, max_rows)
            _check_width(key, data, model.pipeline)
            if key == "dataframe_split":
                frame = dataframe_from_parsed_json(data, pandas_orient="split")
            elif key == "dataframe_records" or (
                    isinstance(data, list) and all(isinstance(r, dict) for r in data)):
                frame = dataframe_from_parsed_json(data, pandas_orient="records")
            elif isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
                frame = pd.DataFrame(data)
            else:
                raise RequestError(400, f"'{key}' must hold rows as objects or columns as "
                                        "lists: this model takes a table",
                                   [{"field": key, "message": "not tabular"}])
    except RequestError:
        raise
    except Exception as err:  # MLflow's parser raises MlflowException, pandas anything
        raise RequestError(400, f"cannot parse the input as a data frame: {_message(err)}") \
            from None
    if not isinstance(frame, pd.DataFrame):
        raise RequestError(400, "the input must be tabular: one record per row, one field per "
                                "column")
    if len(frame) > max_rows:
        raise RequestError(413, f"{len(frame)} rows is over the limit of {max_rows} per request")
    if len(frame) == 0:
        raise RequestError(400, "the input has no rows")
    frame = frame.reset_index(drop=True)
    _check_frame(frame, model.pipeline)
    columns = frame_to_columns(frame, dict(model.pipeline.input_schema))
    return complete_columns(columns, model.pipeline, len(frame)), len(frame)


def _message(err: Exception) -> str:
    return str(getattr(err, "message", None) or err).split("\n")[0][:500]


def _text_io(raw: bytes) -> Any:
    from io import StringIO

    try:
        return StringIO(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the CSV body is not UTF-8: {err}") from None


def _read_csv(raw: bytes, pipeline: FeaturePipeline) -> Any:
    """The CSV body as a frame, its header and first row's widths checked before pandas.

    pandas makes the leading fields of a first row longer than the header a MultiIndex, in
    time quadratic in the extra fields (a single 80 KB line held the interpreter for 25 s), and
    a column per header field (400,000 fields took 24 s to refuse). The C ``csv`` reader reads
    the two lines in linear time; a field over its 128 KiB limit there is a 400. Later rows of
    another width are refused by pandas' tokenizer at once.
    """
    import csv

    import pandas as pd

    text = _text_io(raw)
    try:
        reader = csv.reader(text)
        header = next(reader, [])
        first = next(reader, None)
    except csv.Error as err:
        raise RequestError(400, f"cannot parse the CSV header: {err}") from None
    _check_names("the CSV header", header, pipeline)
    if first is not None and len(first) > len(header):
        raise RequestError(400, f"the first CSV row has {len(first)} fields, the header "
                                f"{len(header)}: send one field per column")
    text.seek(0)
    text_cols = {c: object for c, k in pipeline.input_schema.items() if k == "string"}
    return pd.read_csv(text, dtype=text_cols)


def _bytes_io(raw: bytes) -> Any:
    from io import BytesIO

    return BytesIO(raw)


_DECODED_BYTES_FLOOR = 16 * 2**20
_DECODED_BYTES_PER_VALUE = 1024
"""A Parquet body may decode to 16 MiB plus 1 KiB per value (rows x columns), no more."""


def _read_parquet(raw: bytes, pipeline: FeaturePipeline, max_rows: int) -> Any:
    """The Parquet body as a frame, checked from its footer before any page is decoded.

    A few kilobytes of Parquet can hold millions of compressed rows, or one long text that a
    dictionary repeats on every row: the row count, the columns and the row groups' declared
    sizes are refused from the footer; only the model's columns are decoded, with text kept
    dictionary-encoded until its decoded size is known to be within the limit.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    file = pq.ParquetFile(pa.BufferReader(raw))  # reads the footer only
    meta, arrow_schema = file.metadata, file.schema_arrow
    n = meta.num_rows
    if n > max_rows:
        raise RequestError(413, f"{n} rows is over the limit of {max_rows} per request")
    if n <= 0:
        return pd.DataFrame()
    index_cols = {c for c in (arrow_schema.pandas_metadata or {}).get("index_columns", [])
                  if isinstance(c, str)}
    names = [c for c in arrow_schema.names if c not in index_cols]
    if len(names) > len(pipeline.input_schema):
        raise RequestError(400, f"{len(names)} columns is over the model's "
                                f"{len(pipeline.input_schema)}: send one column per input")
    _check_frame(pd.DataFrame(columns=names), pipeline)  # unknown or repeated columns
    leaves = [i for i in range(meta.num_columns)
              if meta.schema.column(i).path.split(".")[0] in names]
    budget = _DECODED_BYTES_FLOOR + n * len(names) * _DECODED_BYTES_PER_VALUE
    declared = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if not 0 <= group.num_rows <= n:
            raise RequestError(400, f"row group {g} claims {group.num_rows} rows of the file's {n}")
        declared += sum(max(group.column(i).total_uncompressed_size, 0) for i in leaves)
    if declared > budget:
        raise RequestError(413, f"the Parquet body declares {declared} decoded bytes, over the "
                                f"limit of {budget} for {n} rows")
    text = [f.name for f in arrow_schema if f.name in names and (
        pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type))]
    table = pq.ParquetFile(pa.BufferReader(raw), metadata=meta, read_dictionary=text
                           ).read(columns=names)
    decoded = 0
    for column in table.columns:
        for chunk in column.chunks:
            if isinstance(chunk, pa.DictionaryArray):
                lengths = pc.take(pc.binary_length(chunk.dictionary), chunk.indices)
                decoded += (pc.sum(lengths).as_py() or 0) + 8 * len(chunk)
            else:
                decoded += chunk.nbytes
    if decoded > budget:
        raise RequestError(413, f"the Parquet body decodes to {decoded} bytes, over the limit "
                                f"of {budget} for {n} rows")
    return pd.read_parquet(_bytes_io(raw), columns=names)


def _check_row_count(data: Any, max_rows: int) -> None:
    # Refuse oversized bodies before pandas builds a frame of them.
    n = None
    if isinstance(data, list):
        n = len(data)
    elif isinstance(data, dict) and isinstance(data.get("data"), list):
        index = data.get("index")
        n = max(len(data["data"]), len(index) if isinstance(index, list) else 0)
    elif isinstance(data, dict):
        lengths = [len(v) for v in data.values() if isinstance(v, list)]
        n = max(lengths) if lengths else None
    if n is not None and n > max_rows:
        raise RequestError(413, f"{n} rows is over the limit of {max_rows} per request")


def _check_width(key: str, data: Any, pipeline: FeaturePipeline) -> None:
    """Refuse more columns than the model has, in one pass over the decoded JSON.

    pandas builds a column per distinct key and the frame check then names every unknown one:
    400,000 keys in a 6 MB body took 5-9 s to refuse, and 10,000 one-key rows each naming
    another column (a 0.1 MB body) a 10,000 x 10,000 frame, 22 s. Unknown columns are refused
    either way; within the model's width they are named by the frame check as before.
    """
    limit = len(pipeline.input_schema)
    if key == "dataframe_split" and isinstance(data, dict):
        columns = data.get("columns")
        if isinstance(columns, list):
            _check_names(f"{key}.columns", columns, pipeline)
        rows = data.get("data")
        for i, r in enumerate(rows if isinstance(rows, list) else []):
            _check_row(f"{key}.data.{i}", r, pipeline)
    elif isinstance(data, dict):  # {column: [values]}
        _check_names(key, data, pipeline)
    elif isinstance(data, list):  # records: each row may name other columns
        seen: set[str] = set()
        for i, r in enumerate(data):
            _check_row(f"{key}.{i}", r, pipeline)
            if isinstance(r, dict):
                seen.update(r)
                if len(seen) > limit:
                    _check_names(f"rows 0-{i} of {key}", seen, pipeline)


def _check_row(what: str, row: Any, pipeline: FeaturePipeline) -> None:
    # A row given as a list becomes columns 0, 1, ... in pandas: named so here too.
    if isinstance(row, list):
        _check_names(what, range(len(row)), pipeline)
    elif isinstance(row, dict):
        _check_names(what, row, pipeline)


def _check_names(what: str, names: Any, pipeline: FeaturePipeline) -> None:
    """400 naming the limit (and the first unknown names) when ``names`` is wider than the
    model; ``names`` is a list of column names, a row, or a set or dict of names."""
    limit = len(pipeline.input_schema)
    if len(names) <= limit:
        return
    schema = pipeline.input_schema
    unknown = islice((str(c) for c in names if not (isinstance(c, str) and c in schema)),
                     MAX_ERRORS)
    raise RequestError(400, f"{what} names {len(names)} columns, over the model's {limit}: "
                            "send one column per input (unknown columns are refused)",
                       [{"field": c, "message": "unknown column"} for c in unknown])


def _check_frame(frame: Any, pipeline: FeaturePipeline) -> None:
    errors = frame_problems(frame, pipeline)
    if errors:
        raise RequestError(
            400, "invalid input: " + "; ".join(f"{e['field']}: {e['message']}"
                                               for e in errors[:5]),
            errors[:MAX_ERRORS],
        )


def invocations_response(outputs: Outputs, spec: ModelSpec) -> bytes:
    """``{"predictions": [{column: value}, ...]}``, as ``mlflow models serve`` writes it."""
    import io

    import pandas as pd
    from mlflow.pyfunc import scoring_server as mlflow_scoring

    frame = pd.DataFrame({c: outputs[c] for c in output_names(spec)})
    if PREDICTION_COLUMN in frame and frame[PREDICTION_COLUMN].dtype == object:
        frame[PREDICTION_COLUMN] = frame[PREDICTION_COLUMN].astype(object)
    buf = io.StringIO()
    mlflow_scoring.predictions_to_json(frame, buf)
    return buf.getvalue().encode()
