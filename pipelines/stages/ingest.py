"""Ingest: turn a configured source of any kind into a Ray Dataset.

The runner calls only :func:`read_source`, :func:`source_fingerprint` and :func:`rows_read`;
the kind-specific work lives in ``pipelines.sources`` (one module per kind).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import AnySource, DemoSource, FileSource, HttpSource, SqlSource
from pipelines.demo import write_demo_parquet
from pipelines.sources._errors import InputError, error_chain, unwrap_input_error
from pipelines.sources.files import parquet_rows, read_file_source, read_files, resolve_paths

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["InputError", "read_files", "read_source", "resolve_paths", "rows_read",
           "source_errors", "source_fingerprint", "source_path"]

logger = logging.getLogger(__name__)


def _demo_files(source: DemoSource, work_dir: Path) -> FileSource:
    return FileSource(path=str(write_demo_parquet(work_dir / "data", source.rows, source.seed)))


def source_path(source: DemoSource | FileSource, work_dir: Path) -> str:
    """Where a file-backed source's data lies; the demo source is generated there first."""
    return _demo_files(source, work_dir).path if isinstance(source, DemoSource) else source.path


def read_source(source: AnySource, work_dir: Path) -> Dataset:
    """Read the configured source into a Dataset.

    Files and SQL reads are lazy (streamed by the stages that follow); an HTTP source is
    fetched once and kept as a snapshot in the object store. The demo source is generated
    once to Parquet under ``work_dir``, then read as files.

    Raises:
        InputError: the source cannot be read; the message names the file, table or page.
    """
    if isinstance(source, DemoSource):
        return read_file_source(_demo_files(source, work_dir))
    if isinstance(source, FileSource):
        return read_file_source(source)
    if isinstance(source, SqlSource):
        from pipelines.sources.sql import read_sql_source

        return read_sql_source(source)
    from pipelines.sources.http import read_http_source

    return read_http_source(source)


def source_fingerprint(source: AnySource, work_dir: Path,
                       dataset: Dataset | None = None) -> tuple[str, str]:
    """``(uri, sha256)`` of the source's data, for lineage and stage caching.

    Files: names and bytes of the files. SQL: a digest of the query result's content (see
    :func:`pipelines.sources.sql.sql_fingerprint`). HTTP: a digest of the records fetched,
    taken from ``dataset`` (what :func:`read_source` returned) so that pages are not fetched
    twice. Every source kind answers here, so the runner never needs to know how it is stored.
    """
    if isinstance(source, DemoSource | FileSource):
        from pipelines.sources.files import file_fingerprint

        return file_fingerprint(_demo_files(source, work_dir)
                                if isinstance(source, DemoSource) else source)
    if isinstance(source, SqlSource):
        from pipelines.sources.sql import sql_fingerprint

        return sql_fingerprint(source)
    from pipelines.sources.http import http_fingerprint

    return http_fingerprint(source, dataset)


def rows_read(source: AnySource, dataset: Dataset | None, work_dir: Path) -> int | None:
    """Rows the source delivered, where that is cheap to know before the data is consumed.

    Local Parquet (and the demo): from the footers. HTTP: the snapshot's count. SQL: a
    ``COUNT(*)`` run by the database. CSV, JSON and remote files: None, since counting would
    read everything an extra time; the validation stage's ``rows_in`` counts them.
    """
    if isinstance(source, HttpSource):
        assert dataset is not None, "an HTTP source is counted from its snapshot"
        return dataset.count()  # materialised: the count is metadata
    if isinstance(source, SqlSource):
        from pipelines.sources.sql import sql_rows

        return sql_rows(source)
    files = _demo_files(source, work_dir) if isinstance(source, DemoSource) else source
    if files.on_unreadable == "skip":
        return None  # some files may be left out: validation counts what was read
    paths = resolve_paths(files.path)
    if files.format == "parquet" and all("://" not in p for p in paths):
        return parquet_rows(paths)
    return None


# Ray's message; the path ends at the sentence's full stop.
_CSV_FAILURE = re.compile(r"^Failed to read CSV file: (.+?)\. Please check")


def _first_line(err: BaseException) -> str:
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return lines[0].strip() if lines else type(err).__name__


@contextmanager
def source_errors(source: AnySource) -> Iterator[None]:
    """Turn a read failure inside a Ray task into one :class:`InputError` line.

    File, SQL and HTTP reads are lazy: a corrupt file or a value the CSV reader cannot
    convert fails only when a later stage pulls the rows, as a ``RayTaskError`` carrying a
    remote traceback. An :class:`InputError` raised in the task (SQL, HTTP) is re-raised with
    its own message; for files, the failing file is found and named with the reader's reason.
    Errors that are not read failures pass unchanged.
    """
    try:
        yield
    except InputError:
        raise
    except Exception as err:
        inner = unwrap_input_error(err)
        if inner is not None:
            raise InputError(str(inner)) from err
        if not isinstance(source, FileSource):  # the generated demo file is not corrupt
            raise
        named = next((m.group(1) for e in error_chain(err)
                      if (m := _CSV_FAILURE.match(_first_line(e)))), None)
        from pipelines.sources.files import find_unreadable_file

        bad = find_unreadable_file(source, named)
        if bad is None:
            raise
        hint = ""
        if "conversion error" in bad[1]:
            hint = (" (a column holds values of another type further down the file: name it "
                    "in source.column_types as string, and the data contract quarantines the "
                    "bad rows)")
        raise InputError(f"cannot read {source.format} file {bad[0]}: {bad[1]}{hint}") from err
