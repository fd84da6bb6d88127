"""Hostile request bodies for the Serve app: hostile in shape, not in size.

Huge input counts, wide rows, many keys, deep JSON, ragged CSV, compressed Parquet bombs and
many row groups, bodies near and just over ``serve.max_body_bytes``, for /predict,
/invocations (JSON, CSV, Parquet) and /v2 infer. Generated from a seed, so every run sends the
same requests; the bodies are assembled from bytes (no ``json.dumps`` of million-element
structures) and built once per distinct shape, so 1,000 requests cost seconds and repeat a few
hundred distinct bodies.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Callable
from typing import NamedTuple

from tests.e2e.serving_helpers import MODEL, ROW

V2_INFER = f"/v2/models/{MODEL}/infer"
JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}
PARQUET = {"content-type": "application/vnd.apache.parquet"}


class Hostile(NamedTuple):
    shape: str
    path: str
    headers: dict[str, str]
    body: bytes


def _join(head: bytes, unit: bytes, count: int, tail: bytes, sep: bytes = b",") -> bytes:
    return head + sep.join([unit] * count) + tail


def _keys(count: int, value: bytes = b"0") -> bytes:
    """``"x0": 0, "x1": 0, ...``: ``count`` distinct keys."""
    return b",".join(b'"x%d":%s' % (i, value) for i in range(count))


@functools.cache
def _wide_row(count: int) -> bytes:
    return b'{"instances": [{' + _keys(count) + b"}]}"


@functools.cache
def invocations_keys(shape: str, count: int) -> bytes:
    names = b",".join(b'"x%d"' % i for i in range(count))
    if shape == "split":
        return _join(b'{"dataframe_split": {"columns": [' + names + b'], "data": [[',
                     b"0", count, b"]]}}")
    if shape == "records":
        return b'{"dataframe_records": [{' + _keys(count) + b"}]}"
    if shape == "records-union":  # every row names another column
        return b'{"dataframe_records": [' + b",".join(
            b'{"x%d": 0}' % i for i in range(count)) + b"]}"
    return b'{"inputs": {' + _keys(count, b"[0]") + b"}}"


@functools.cache
def _csv(shape: str, count: int) -> bytes:
    if shape == "wide":
        return b",".join(b"x%d" % i for i in range(count)) + b"\n" + _join(b"", b"0", count, b"\n")
    if shape == "ragged":
        return _join(b"tenure_months\n", b"1", count, b"\n")
    return _join(b"tenure_months\n", b"1", count, b"\n", b"\n")


@functools.cache
def parquet_body(shape: str, rows: int, codec: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    if shape == "row-bomb":  # constant columns: dictionary + RLE, a few bytes per million rows
        block = pa.table({"tenure_months": pa.repeat(pa.scalar(1.0), 1_000_000),
                          "plan": pa.repeat(pa.scalar("basic"), 1_000_000)})
        with pq.ParquetWriter(buf, block.schema, compression=codec) as writer:
            for _ in range(rows // 1_000_000):
                writer.write_table(block)
        return buf.getvalue()
    if shape == "text-bomb":  # valid rows within the limit, each with the same long text
        table = pa.Table.from_pylist([{**ROW, "plan": "x" * 2**20}] * rows)
    elif shape == "wide":
        table = pa.table({f"x{i}": [1.0] for i in range(rows)})
    else:  # valid rows, one row group each
        table = pa.Table.from_pylist([ROW] * rows)
    pq.write_table(table, buf, compression=codec, row_group_size=1 if shape == "groups" else None)
    return buf.getvalue()


@functools.cache
def v2_body(shape: str, count: int) -> bytes:
    if shape == "flood":
        return _join(b'{"inputs": [', b'{"name": "x", "datatype": "FP64", "shape": [1], '
                     b'"data": [1.0]}', count, b"]}")
    if shape == "long-data":
        return _join(b'{"inputs": [{"name": "tenure_months", "datatype": "FP64", "shape": [%d], '
                     b'"data": [' % count, b"1.5", count, b"]}]}")
    if shape == "nested-data":  # [[1], [1], ...]: shape [n, 1], a list per value
        return _join(b'{"inputs": [{"name": "tenure_months", "datatype": "FP64", '
                     b'"shape": [%d, 1], "data": [' % count, b"[1]", count, b"]}]}")
    return _V2_HEAD + b"[" * count + b"1" + b"]" * count + b"]}]}"


@functools.cache
def _near(limit: int, unit: bytes, head: bytes, tail: bytes) -> bytes:
    """A body of ``unit`` repeated to just under ``limit`` bytes."""
    return _join(head, unit, (limit - len(head) - len(tail) - 64) // (len(unit) + 1), tail)


@functools.cache
def _deep(head: bytes, depth: int, tail: bytes) -> bytes:
    return head + b"[" * depth + b"]" * depth + tail


@functools.cache
def _blank(size: int) -> bytes:
    return b" " * size


_KEYS = (1_000, 10_000, 100_000, 400_000)
_CODECS = ("snappy", "gzip", "brotli", "zstd", "lz4", "none")
_V2_HEAD = b'{"inputs": [{"name": "tenure_months", "datatype": "FP64", "shape": [1], "data": ['
_LYING_SIZE = (b'{"inputs": [{"name": "tenure_months", "datatype": "FP64", "shape": [1], '
               b'"parameters": {"binary_data_size": 99999999999}}]}')


def _predict(rng: random.Random, limit: int, max_rows: int) -> Hostile:
    shape = rng.choice(("wide row", "rows over the limit", "deep"))
    if shape == "wide row":
        body = _wide_row(rng.choice(_KEYS))
    elif shape == "rows over the limit":
        body = _join(b'{"instances": [', b'{"tenure_months": 1}', max_rows + 1, b"]}")
    else:
        body = _deep(b'{"instances": ', rng.choice((1_000, 100_000)), b"}")
    return Hostile(f"predict {shape}", "/predict", JSON, body)


def _invocations(rng: random.Random, limit: int, max_rows: int) -> Hostile:
    shape = rng.choice(("split", "records", "records-union", "inputs", "index", "deep"))
    if shape == "index":
        body = _join(b'{"dataframe_split": {"columns": ["tenure_months"], "data": [[1]], '
                     b'"index": [', b"0", rng.choice((max_rows + 1, 1_000_000)), b"]}}")
    elif shape == "deep":
        body = _deep(b'{"inputs": ', rng.choice((1_000, 100_000)), b"}")
    else:
        body = invocations_keys(shape, rng.choice(_KEYS[:3]))
    return Hostile(f"invocations {shape}", "/invocations", JSON, body)


def _csv_body(rng: random.Random, limit: int, max_rows: int) -> Hostile:
    shape = rng.choice(("wide", "ragged", "rows"))
    count = max_rows + 1 if shape == "rows" else rng.choice((10_000, 40_000, 400_000))
    return Hostile(f"csv {shape}", "/invocations", CSV, _csv(shape, count))


_PARQUET: dict[str, dict[int, tuple[str, ...]]] = {
    # shape -> rows (or columns) -> codecs: every codec on the small variants, one or two on
    # those that take seconds to write
    "row-bomb": {1_000_000: _CODECS, 10_000_000: ("zstd", "brotli"), 30_000_000: ("gzip",)},
    "text-bomb": {20: ("snappy", "zstd", "lz4", "none"), 100: ("zstd",)},
    "wide": {100: _CODECS, 2_000: _CODECS},
    "groups": {300: ("snappy", "gzip", "zstd")},
}


def _parquet_body(rng: random.Random, limit: int, max_rows: int) -> Hostile:
    shape = rng.choice(list(_PARQUET))
    rows = rng.choice(list(_PARQUET[shape]))
    codec = rng.choice(_PARQUET[shape][rows])
    return Hostile(f"parquet {shape} {codec}", "/invocations", PARQUET,
                   parquet_body(shape, rows, codec))


def _v2_body(rng: random.Random, limit: int, max_rows: int) -> Hostile:
    shape = rng.choice(("flood", "long-data", "nested-data", "deep", "lying binary size"))
    if shape == "lying binary size":
        header = _LYING_SIZE.ljust(len(_LYING_SIZE) + 8)
        return Hostile(f"v2 {shape}", V2_INFER, {
            **JSON, "inference-header-content-length": str(len(header))},
            header + b"\0" * rng.choice((8, 80_000)))
    count = rng.choice((100, 100_000) if shape == "deep" else (10_000, 100_000))
    return Hostile(f"v2 {shape}", V2_INFER, JSON, v2_body(shape, count))


def _near_limit(rng: random.Random, limit: int, max_rows: int) -> Hostile:
    """Small containers filling the body to just under the limit: the costliest JSON to
    decode per byte."""
    path, head, tail = rng.choice((
        ("/predict", b'{"instances": [', b"]}"),
        ("/invocations", b'{"dataframe_split": {"data": [', b"]}}"),
        (V2_INFER, _V2_HEAD, b"]}]}"),
    ))
    unit = rng.choice((b"[0]", b"{}", b"0"))
    return Hostile(f"near the limit {unit.decode()}", path, JSON, _near(limit, unit, head, tail))


def _over_limit(rng: random.Random, limit: int, max_rows: int) -> Hostile:
    path = rng.choice(("/predict", "/invocations", V2_INFER))
    return Hostile("over the body limit", path, JSON, _blank(limit + rng.choice((1, 1000))))


_MAKERS: list[tuple[float, Callable[[random.Random, int, int], Hostile]]] = [
    (1.0, _predict), (1.5, _invocations), (1.0, _csv_body), (1.5, _parquet_body),
    (1.5, _v2_body), (0.15, _near_limit), (0.05, _over_limit),
]


def hostile_requests(count: int, seed: int, max_body_bytes: int,
                     max_rows: int) -> list[Hostile]:
    """``count`` hostile requests, the same for the same arguments."""
    rng = random.Random(seed)
    weights = [w for w, _ in _MAKERS]
    return [rng.choices(_MAKERS, weights)[0][1](rng, max_body_bytes, max_rows)
            for _ in range(count)]
