"""HTTP source: a paginated JSON API as a Ray Data datasource.

Page and offset pagination with a known total are split into contiguous page ranges read by
parallel tasks; without a total, and for cursor pagination (each page names the next), one
task walks the pages in order. Records become Arrow tables with nested objects flattened to
``parent.child`` columns.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.data.datasource import Datasource, ReadTask

from pipelines.config import HttpSource
from pipelines.sources._errors import InputError
from pipelines.sources.http_client import Clock, JsonFetcher, RateLimiter, RetryPolicy, SystemClock

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset
    from ray.data.context import DataContext

__all__ = ["HttpDatasource", "Page", "dig", "http_fingerprint", "page_params", "read_http_source",
           "records_to_table", "walk_pages"]

logger = logging.getLogger(__name__)

# Records a read task gathers into one block before handing it to Ray.
_BLOCK_RECORDS = 50_000


def dig(body: Any, path: str, label: str, required: bool = True) -> Any:
    """The value at dotted ``path`` (``data.items``, ``pages.0.next``) of a JSON document."""
    node = body
    for part in [p for p in path.split(".") if p]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif required:
            raise InputError(f"{label}: the response has no {path!r} (missing {part!r})")
        else:
            return None
    return node


@dataclass(frozen=True)
class Page:
    """One request: its 0-based index, query parameters and URL; ``label`` names it in errors."""

    index: int
    url: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"http source {self.url}{'?' + query if query else ''} (page {self.index + 1})"


def page_params(source: HttpSource, index: int) -> dict[str, str]:
    """Query parameters of page ``index`` (0-based) for page or offset pagination."""
    params = dict(source.params)
    if source.pagination == "page":
        params |= {source.page_param: str(source.first_page + index),
                   source.size_param: str(source.page_size)}
    elif source.pagination == "offset":
        params |= {source.offset_param: str(index * source.page_size),
                   source.size_param: str(source.page_size)}
    return params


def _records(source: HttpSource, body: Any, page: Page) -> list[dict[str, Any]]:
    records = dig(body, source.records_path, page.label)
    if not isinstance(records, list):
        raise InputError(f"{page.label}: {source.records_path or 'the response'!s} is a "
                         f"{type(records).__name__}, not a list of records")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(f"{page.label}: record {i} is a {type(rec).__name__}, not an object")
    return records


def walk_pages(source: HttpSource, fetcher: JsonFetcher, start: int = 0, stop: int | None = None,
               first_body: Any = None) -> Iterator[tuple[Page, list[dict[str, Any]]]]:
    """Fetch pages in order, yielding each page with its records.

    Page/offset: pages ``start`` up to ``stop`` (exclusive); with no ``stop``, until a page
    shorter than ``page_size``. Cursor: from the first page until the cursor is missing.
    ``max_pages`` caps every style. ``first_body`` is page ``start``'s response, if already
    fetched.
    """
    caps = [x for x in (stop, source.max_pages) if x is not None]
    limit = min(caps) if caps else None
    index, url, params = start, source.url, page_params(source, start)
    seen_cursors: set[str] = set()
    while limit is None or index < limit:
        page = Page(index, url, params)
        body = first_body if (first_body is not None and index == start) else \
            fetcher.get(url, params, page.label)
        records = _records(source, body, page)
        yield page, records
        if source.pagination == "none":
            return
        if source.pagination == "cursor":
            cursor = dig(body, source.next_cursor_path, page.label, required=False)
            if cursor in (None, "") or not isinstance(cursor, str | int):
                return
            cursor = str(cursor)
            if cursor in seen_cursors:
                raise InputError(f"{page.label}: the API returned cursor {cursor!r} twice; "
                                 "stopping instead of looping forever")
            seen_cursors.add(cursor)
            if cursor.startswith(("http://", "https://")):
                url, params = cursor, {}
            else:
                url, params = source.url, {**source.params, source.cursor_param: cursor}
        else:
            if stop is None and len(records) < source.page_size:
                return
            params = page_params(source, index + 1)
        index += 1


def _flatten(table: pa.Table) -> pa.Table:
    import pyarrow as pa

    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def records_to_table(records: list[dict[str, Any]], where: str) -> pa.Table:
    """Records to an Arrow table over the union of their keys, nested objects flattened.

    A key whose values have no common type (``1`` on one record, ``"n/a"`` on another) is kept
    as JSON text rather than failing the read, so that the data contract can quarantine the
    bad rows instead of the whole source being lost.
    """
    import pyarrow as pa

    if not records:
        return pa.table({})
    try:
        return _flatten(pa.Table.from_struct_array(pa.array(records)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        pass
    keys = list(dict.fromkeys(k for rec in records for k in rec))
    columns = {}
    for key in keys:
        values = [rec.get(key) for rec in records]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            logger.warning("%s: column %r mixes value types; kept as JSON text", where, key)
            columns[key] = pa.array([None if v is None else v if isinstance(v, str)
                                     else json.dumps(v) for v in values], pa.string())
    return _flatten(pa.table(columns))


class HttpDatasource(Datasource):
    """Ray Data datasource over a paginated JSON API (see :class:`pipelines.config.HttpSource`)."""

    def __init__(self, source: HttpSource, token: str | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__()
        self.source = source
        self._token = token
        self._clock = clock or SystemClock()
        self._first_body: Any = None

    def get_name(self) -> str:
        return "HttpJson"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def _fetcher(self, share: int = 1) -> JsonFetcher:
        import httpx

        headers = dict(self.source.headers)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        rate = self.source.rate_limit / share if self.source.rate_limit else None
        client = httpx.Client(timeout=self.source.timeout_s, headers=headers,
                              follow_redirects=True)
        policy = RetryPolicy(self.source.max_retries, self.source.backoff_s,
                             self.source.backoff_max_s)
        return JsonFetcher(client, policy, RateLimiter(rate, self._clock), self._clock)

    def _read_fn(self, start: int, stop: int | None, share: int,
                 first_body: Any = None) -> Any:
        def read() -> Iterable[pa.Table]:
            fetcher = self._fetcher(share)
            pending: list[dict[str, Any]] = []
            first = last = None
            rows = 0
            with fetcher.client:
                for page, records in walk_pages(self.source, fetcher, start, stop, first_body):
                    first = first or page
                    last = page
                    rows += len(records)
                    pending.extend(records)
                    if len(pending) >= _BLOCK_RECORDS:
                        yield records_to_table(pending, f"{first.label} to page {page.index + 1}")
                        pending, first = [], None
            if pending:
                assert first is not None and last is not None
                yield records_to_table(pending, f"{first.label} to page {last.index + 1}")
            logger.info("http source %s: %d records read from pages %d..%s in %d requests",
                        self.source.url, rows, start + 1, last.index + 1 if last else start,
                        fetcher.requests)
        return read

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: DataContext | None = None) -> list[ReadTask]:
        from ray.data.block import BlockMetadata

        meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        if self.source.total_path is None:
            return [ReadTask(self._read_fn(0, None, 1), meta,
                             per_task_row_limit=per_task_row_limit)]
        # The first page says how many records there are; keep it for the first task. Ray
        # plans a read more than once (sizing, then executing): fetch it only the first time.
        first = Page(0, self.source.url, page_params(self.source, 0))
        if self._first_body is None:
            fetcher = self._fetcher()
            with fetcher.client:
                self._first_body = fetcher.get(first.url, first.params, first.label)
        body = self._first_body
        total = dig(body, self.source.total_path, first.label)
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise InputError(f"{first.label}: total_path {self.source.total_path!r} is "
                             f"{total!r}, not a record count")
        pages = max(1, math.ceil(total / self.source.page_size))
        if self.source.max_pages is not None:
            pages = min(pages, self.source.max_pages)
        tasks = max(1, min(parallelism, pages))
        bounds = [round(i * pages / tasks) for i in range(tasks + 1)]
        logger.info("http source %s: %d records in %d pages, %d read tasks", self.source.url,
                    total, pages, tasks)
        return [ReadTask(self._read_fn(lo, hi, tasks, body if lo == 0 else None), meta,
                         per_task_row_limit=per_task_row_limit)
                for lo, hi in itertools.pairwise(bounds) if hi > lo]


def _token(source: HttpSource) -> str | None:
    if source.token_env is None:
        return None
    token = os.environ.get(source.token_env)
    if token is None:
        raise InputError(f"source.token_env: environment variable {source.token_env} is not set")
    return token


def read_http_source(source: HttpSource) -> Dataset:
    """Fetch every page once and keep the records in Ray's object store (a snapshot).

    An API answers differently from one call to the next and may charge or throttle each
    call, so the pages are fetched exactly once; later stages and the fingerprint read the
    materialised snapshot.
    """
    import ray
    import ray.data

    from pipelines.sources._errors import unwrap_input_error

    tasks = source.parallelism or max(1, int(ray.cluster_resources().get("CPU", 1)))
    try:
        return ray.data.read_datasource(HttpDatasource(source, _token(source)),
                                        override_num_blocks=tasks).materialize()
    except InputError:
        raise
    except Exception as err:  # a read task's InputError arrives wrapped by Ray
        inner = unwrap_input_error(err)
        if inner is not None:
            raise InputError(str(inner)) from err
        raise InputError(f"http source {source.url}: {type(err).__name__}: {err}") from err


def _block_digest(batch: pa.Table) -> dict[str, list[Any]]:
    import pyarrow as pa

    total = 0
    for row in batch.to_pylist():
        line = json.dumps(row, sort_keys=True, default=str).encode()
        total += int.from_bytes(hashlib.sha256(line).digest()[:16], "big")
    return {"rows": [batch.num_rows], "digest": [str(total % (1 << 128))],
            "columns": [",".join(sorted(pa.table(batch).column_names))]}


def http_fingerprint(source: HttpSource, dataset: Dataset | None = None) -> tuple[str, str]:
    """``(url, sha256)`` of the records fetched: order-independent sum of per-record hashes.

    Pass the snapshot :func:`read_http_source` returned, else the pages are fetched again.
    The hashing runs in Ray tasks over the snapshot's blocks; only one row per block comes back.
    """
    ds = dataset if dataset is not None else read_http_source(source)
    parts = ds.map_batches(_block_digest, batch_format="pyarrow", batch_size=None).take_all()
    rows = sum(int(p["rows"]) for p in parts)
    total = sum(int(p["digest"]) for p in parts) % (1 << 128)
    columns = sorted({c for p in parts for c in str(p["columns"]).split(",") if c})
    h = hashlib.sha256(f"{source.url}\n{','.join(columns)}\n{rows}:{total}".encode())
    return source.url, h.hexdigest()
