"""HTTP source: a paginated JSON API as a Ray Data datasource.

Page and offset pagination with a known total are split into contiguous page ranges read by
parallel tasks; without a total, and for cursor pagination (each page names the next), one
task walks the pages in order. Records become Arrow tables with nested objects flattened to
``parent.child`` columns.

The token goes to the source's own origin only: a next URL elsewhere is refused, not
followed. A read is bounded: at most ``max_pages`` pages of at most ``max_response_bytes``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.data.datasource import Datasource, ReadTask

from pipelines.config import HttpSource
from pipelines.lineage import fingerprint_dataset
from pipelines.redact import MASK, redact_url
from pipelines.sources._errors import InputError
from pipelines.sources.base import SourceReader
from pipelines.sources.http_client import Clock, JsonFetcher, RateLimiter, RetryPolicy, SystemClock

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset
    from ray.data.context import DataContext

__all__ = ["HttpDatasource", "HttpReader", "Page", "Secrets", "check_next_url", "dig", "http_fingerprint",
           "page_params", "planned_pages", "read_http_source", "read_secrets", "records_to_table",
           "walk_pages"]

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
    """One request: its 0-based index, query parameters and URL; ``label`` names it in errors.

    The label shows no secret: the URL goes through :func:`redact_url`, and the values of the
    ``hidden`` parameters (the source's own ``params``, which may hold an API key) are ``***``;
    the pagination parameters are shown, since they say which page failed.
    """

    index: int
    url: str
    params: dict[str, str] = field(default_factory=dict)
    hidden: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        url = redact_url(self.url)
        query = "&".join(f"{k}={MASK if k in self.hidden else v}" for k, v in self.params.items())
        sep = "&" if "?" in url else "?"
        return f"http source {url}{sep + query if query else ''} (page {self.index + 1})"


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


def _page(source: HttpSource, index: int) -> Page:
    return Page(index, source.url, page_params(source, index), frozenset(source.params))


def _origin(url: str, label: str) -> tuple[str, str, int]:
    """Scheme, host and port of ``url`` as httpx will connect to them (port made explicit)."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        raise InputError(f"{label}: {redact_url(url)} is not a valid URL") from err
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme, 0)
    return parsed.scheme, parsed.host, port


def _allowed_hosts(source: HttpSource, default_port: int) -> set[tuple[str, int]]:
    """``(host, port)`` pairs of ``next_url_hosts``; a bare host means the default port."""
    pairs = set()
    for entry in source.next_url_hosts:
        host, _, port = entry.partition(":")
        pairs.add((host, int(port) if port else default_port))
    return pairs


def check_next_url(source: HttpSource, url: str, label: str) -> str:
    """``url`` if a next URL may be followed there, else an :class:`InputError` naming it.

    Every request carries the source's token, so a next URL is followed only on the source's
    own scheme, host and port, or on a host the user listed in ``next_url_hosts`` over the
    same scheme: a response must not be able to send the token elsewhere, or in clear text
    (``https`` to ``http``), or to turn the read into requests to internal addresses.
    """
    scheme, host, port = _origin(url, label)
    own_scheme, own_host, own_port = _origin(source.url, label)
    shown = redact_url(url)
    if scheme != own_scheme:
        why = ("plain http from an https source would send the token in clear text"
               if own_scheme == "https" else
               f"it is {scheme}, the source {own_scheme}; next URLs keep the source's scheme")
        raise InputError(f"{label}: refusing the next URL {shown}: {why}")
    if (host, port) != (own_host, own_port) and \
            (host, port) not in _allowed_hosts(source, own_port):
        where = host if port == own_port else f"{host}:{port}"
        raise InputError(f"{label}: refusing the next URL {shown}: {where} is not the "
                         "source's host and port, and every request carries the token; if "
                         f"{where} is the API's own, add it to next_url_hosts")
    return url


def _records(source: HttpSource, body: Any, page: Page) -> list[dict[str, Any]]:
    records = dig(body, source.records_path, page.label)
    if not isinstance(records, list):
        raise InputError(f"{page.label}: {source.records_path or 'the response'!s} is a "
                         f"{type(records).__name__}, not a list of records")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(f"{page.label}: record {i} is a {type(rec).__name__}, not an object")
    return records


def _next_cursor_page(source: HttpSource, body: Any, page: Page,
                      seen: set[str]) -> Page | None:
    """The page the response's cursor (or full next URL) points to, or None at the end."""
    cursor = dig(body, source.next_cursor_path, page.label, required=False)
    if cursor in (None, "") or not isinstance(cursor, str | int):
        return None
    cursor = str(cursor)
    is_url = cursor.lower().startswith(("http://", "https://"))
    if cursor in seen:
        shown = redact_url(cursor) if is_url else cursor
        raise InputError(f"{page.label}: the API returned cursor {shown!r} twice; "
                         "stopping instead of looping forever")
    seen.add(cursor)
    if is_url:
        return Page(page.index + 1, check_next_url(source, cursor, page.label))
    return Page(page.index + 1, source.url, {**source.params, source.cursor_param: cursor},
                frozenset(source.params))


def _next_page(source: HttpSource, body: Any, page: Page, records: list[dict[str, Any]],
               stop: int | None, seen: set[str]) -> Page | None:
    """The page after ``page``, or None when the read (or this task's range) is done."""
    if source.pagination == "none":
        return None
    if source.pagination == "cursor":
        return _next_cursor_page(source, body, page, seen)
    if stop is None:
        return None if len(records) < source.page_size else _page(source, page.index + 1)
    if page.index + 1 >= stop:
        return None
    if not records:
        # Past the end of the data although total_path promised more: later pages of the
        # range would be empty too, and each costs a request.
        logger.warning("%s: empty page; the total claimed more records, so pages %d..%d are "
                       "not fetched", page.label, page.index + 2, stop)
        return None
    return _page(source, page.index + 1)


def walk_pages(source: HttpSource, fetcher: JsonFetcher, start: int = 0, stop: int | None = None,
               first_body: Any = None) -> Iterator[tuple[Page, list[dict[str, Any]]]]:
    """Fetch pages in order, yielding each page with its records.

    Page/offset: pages ``start`` up to ``stop`` (exclusive), ending early at an empty page;
    with no ``stop``, until a page shorter than ``page_size``. Cursor: from the first page
    until the cursor is missing, following a full next URL only where
    :func:`check_next_url` allows. A read that has more pages than ``max_pages`` fails
    rather than passing part of the data off as all of it. ``first_body`` is page
    ``start``'s response, if already fetched.
    """
    page: Page | None = _page(source, start)
    seen_cursors: set[str] = set()
    while page is not None:
        body = first_body if (first_body is not None and page.index == start) else \
            fetcher.get(page.url, page.params, page.label)
        records = _records(source, body, page)
        yield page, records
        following = _next_page(source, body, page, records, stop, seen_cursors)
        if following is not None and source.max_pages is not None and \
                following.index >= source.max_pages:
            raise InputError(f"{page.label}: the API has more pages than "
                             f"max_pages={source.max_pages}; raise max_pages to read them all")
        page = following


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


def planned_pages(source: HttpSource, first_body: Any, label: str) -> tuple[int, int]:
    """``(records, pages)`` a read with ``total_path`` takes, from the first page's total.

    A total implying more than ``max_pages`` pages is refused here, before any read task is
    planned: an API claiming 10**12 records would otherwise be asked for every page of them.
    """
    path = source.total_path or ""
    total = dig(first_body, path, label)
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise InputError(f"{label}: total_path {path!r} is {total!r}, not a record count")
    pages = max(1, -(-total // source.page_size))
    if source.max_pages is not None and pages > source.max_pages:
        raise InputError(f"{label}: total_path {path!r} gives {total} records, {pages} pages "
                         f"of {source.page_size}: more than max_pages={source.max_pages}; "
                         "raise max_pages (or page_size) if the API really holds that many")
    return total, pages


class HttpDatasource(Datasource):
    """Ray Data datasource over a paginated JSON API (see :class:`pipelines.config.HttpSource`)."""

    def __init__(self, source: HttpSource, token: str | None = None,
                 clock: Clock | None = None, *, secrets: Secrets | None = None) -> None:
        super().__init__()
        self.source = source
        self._token = token
        self._secrets = secrets or Secrets()
        self._clock = clock or SystemClock()
        self._first_body: Any = None

    def get_name(self) -> str:
        return "HttpJson"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def _fetcher(self, share: int = 1) -> JsonFetcher:
        import httpx

        headers = {**self.source.headers, **self._secrets.headers}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        rate = self.source.rate_limit / share if self.source.rate_limit else None
        client = httpx.Client(timeout=self.source.timeout_s, headers=headers,
                              follow_redirects=True)
        policy = RetryPolicy(self.source.max_retries, self.source.backoff_s,
                             self.source.backoff_max_s)
        return JsonFetcher(client, policy, RateLimiter(rate, self._clock), self._clock,
                           self.source.max_response_bytes, secret_params=self._secrets.params)

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
                        redact_url(self.source.url), rows, start + 1,
                        last.index + 1 if last else start, fetcher.requests)
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
        first = _page(self.source, 0)
        if self._first_body is None:
            fetcher = self._fetcher()
            with fetcher.client:
                self._first_body = fetcher.get(first.url, first.params, first.label)
        body = self._first_body
        total, pages = planned_pages(self.source, body, first.label)
        tasks = max(1, min(parallelism, pages))
        bounds = [round(i * pages / tasks) for i in range(tasks + 1)]
        logger.info("http source %s: %d records in %d pages, %d read tasks",
                    redact_url(self.source.url), total, pages, tasks)
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


@dataclass(frozen=True)
class Secrets:
    """Header and query values read from the environment (``headers_env``, ``params_env``).

    Sent with every request and never part of a :class:`Page`, so no label, log line or error
    shows them.
    """

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # Ray may print a task's arguments
        return f"Secrets(headers={sorted(self.headers)}, params={sorted(self.params)})"


def read_secrets(source: HttpSource) -> Secrets:
    """The values of ``source.headers_env`` and ``source.params_env``, read on the driver."""
    values: dict[str, dict[str, str]] = {"headers_env": {}, "params_env": {}}
    for section, out in values.items():
        for name, env in getattr(source, section).items():
            value = os.environ.get(env)
            if value is None:
                raise InputError(f"source.{section}.{name}: environment variable {env} is not set")
            out[name] = value
    return Secrets(values["headers_env"], values["params_env"])


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
        return ray.data.read_datasource(HttpDatasource(source, _token(source),
                                                       secrets=read_secrets(source)),
                                        override_num_blocks=tasks).materialize()
    except InputError:
        raise
    except Exception as err:  # a read task's InputError arrives wrapped by Ray
        inner = unwrap_input_error(err)
        if inner is not None:
            raise InputError(str(inner)) from err
        raise InputError(f"http source {redact_url(source.url)}: {type(err).__name__}: "
                         f"{err}") from err


def http_fingerprint(source: HttpSource, dataset: Dataset | None = None) -> tuple[str, str]:
    """``(url, sha256)`` of the records fetched: order-independent sum of per-record hashes.

    Pass the snapshot :func:`read_http_source` returned, else the pages are fetched again.
    The hashing runs in Ray tasks over the snapshot's blocks; only one row per block comes back.
    """
    ds = dataset if dataset is not None else read_http_source(source)
    return source.url, fingerprint_dataset(ds, source.url)


class HttpReader(SourceReader[HttpSource]):
    """``kind: http``: the API is fetched once into a snapshot in the object store; its count
    and fingerprint are taken from that snapshot, so pages are never fetched twice."""

    kind = "http"
    config_type = HttpSource
    snapshot = True

    def read(self) -> Dataset:
        return read_http_source(self.config)

    def fingerprint(self, dataset: Dataset | None = None) -> tuple[str, str]:
        return http_fingerprint(self.config, dataset)

    def rows(self, dataset: Dataset | None) -> int | None:
        assert dataset is not None, "an HTTP source is counted from its snapshot"
        return dataset.count()  # materialised: the count is metadata
