"""Ingest: turn a configured source of any kind into a Ray Dataset.

The runner calls only :func:`read_source`, :func:`source_fingerprint` and :func:`rows_read`;
each asks the source kind's reader (:func:`pipelines.sources.get_reader`, one class per kind
in ``pipelines.sources``), so nothing here knows which kinds exist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pipelines.config import AnySource
from pipelines.sources._errors import InputError, unwrap_input_error
from pipelines.sources.files import FileBackedReader, read_files, resolve_paths
from pipelines.sources.registry import get_reader, reader_class

if TYPE_CHECKING:
    from ray.data import Dataset

    from pipelines.storage.location import Where

__all__ = ["InputError", "fingerprinted_from_read", "read_files", "read_source", "resolve_paths", "rows_read",
           "source_errors", "source_fingerprint", "source_path"]

logger = logging.getLogger(__name__)


def source_path(source: AnySource, work_dir: Where) -> str:
    """Where a file-backed source's data lies (files, demo); the demo is generated there first.

    Raises:
        TypeError: the source's data are not files (SQL, HTTP).
    """
    reader = get_reader(source, work_dir)
    if not isinstance(reader, FileBackedReader):
        raise TypeError(f"a {source.kind} source is not read from files")
    return reader.files().path


def read_source(source: AnySource, work_dir: Where) -> Dataset:
    """Read the configured source into a Dataset (see :meth:`SourceReader.read`).

    Files and SQL reads are lazy (streamed by the stages that follow); an HTTP source is
    fetched once and kept as a snapshot in the object store. The demo source is generated
    once to Parquet under ``work_dir``, then read as files.

    Raises:
        InputError: the source cannot be read; the message names the file, table or page.
    """
    return get_reader(source, work_dir).read()


def fingerprinted_from_read(source: AnySource) -> bool:
    """Whether :func:`source_fingerprint` and :func:`rows_read` want the Dataset
    :func:`read_source` returned (a snapshot kind), rather than asking the source itself."""
    return reader_class(source.kind).snapshot


def source_fingerprint(source: AnySource, work_dir: Where,
                       dataset: Dataset | None = None) -> tuple[str, str]:
    """``(uri, sha256)`` of the source's data, for lineage and stage caching.

    Files: names and bytes of the files. SQL: a digest of the query result's content. HTTP:
    a digest of the records fetched, taken from ``dataset`` (what :func:`read_source`
    returned) so that pages are not fetched twice. Every source kind answers here, so the
    runner never needs to know how it is stored.
    """
    return get_reader(source, work_dir).fingerprint(dataset)


def rows_read(source: AnySource, dataset: Dataset | None, work_dir: Where) -> int | None:
    """Rows the source delivered, where that is cheap to know before the data is consumed.

    Local Parquet (and the demo): from the footers. HTTP: the snapshot's count. SQL: a
    ``COUNT(*)`` run by the database. Otherwise None; the validation stage's ``rows_in``
    counts them.
    """
    return get_reader(source, work_dir).rows(dataset)


@contextmanager
def source_errors(source: AnySource, work_dir: Where | None = None) -> Iterator[None]:
    """Turn a read failure inside a Ray task into one :class:`InputError` line.

    File, SQL and HTTP reads are lazy: a corrupt file or a value the CSV reader cannot
    convert fails only when a later stage pulls the rows, as a ``RayTaskError`` carrying a
    remote traceback. An :class:`InputError` raised in the task (SQL, HTTP) is re-raised with
    its own message; otherwise the source's reader may explain the failure (files: the
    failing file, with the reader's reason). Errors it cannot explain pass unchanged.
    """
    try:
        yield
    except InputError:
        raise
    except Exception as err:
        inner = unwrap_input_error(err)
        if inner is not None:
            raise InputError(str(inner)) from err
        explained = get_reader(source, work_dir or ".").explain(err)
        if explained is None:
            raise
        raise explained from err
