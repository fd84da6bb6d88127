"""Files source: Parquet, CSV or JSON Lines from a file, folder or glob on any pyarrow filesystem."""

from __future__ import annotations

import glob
import logging
import re
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import FileSource
from pipelines.lineage import fingerprint_files
from pipelines.sources._errors import InputError, error_chain
from pipelines.sources.base import ConfigT, SourceReader
from pipelines.storage.shared import Location

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["FileBackedReader", "FileReader", "file_fingerprint", "find_unreadable_file",
           "parquet_rows", "read_file_source", "read_files", "resolve_paths"]

logger = logging.getLogger(__name__)

_GLOB_CHARS = "*?["


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _visible(name: str) -> bool:
    # Spark/Hive markers (_SUCCESS, _committed_*) and hidden files are not data.
    return not name.startswith((".", "_"))


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*")
                  if p.is_file() and _visible(p.name)
                  and all(_visible(part) for part in p.relative_to(folder).parts))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``glob`` semantics for remote paths: ``*`` and ``?`` stay within one folder, ``**`` not."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _resolve_remote_glob(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    first = min(uri.index(c) for c in _GLOB_CHARS if c in uri)
    cut = uri.rindex("/", 0, first)
    base_uri, pattern = uri[:cut], uri[cut + 1:]
    try:
        fs, base = pafs.FileSystem.from_uri(base_uri)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except Exception as err:  # pyarrow raises OSError or ArrowInvalid, by filesystem
        raise InputError(f"cannot list {base_uri!r} for the glob {uri!r}: {err}") from err
    regex = _glob_regex(pattern)
    matches = sorted(
        f"{base_uri}/{info.path[len(base):].lstrip('/')}" for info in infos
        if info.type == pafs.FileType.File and _visible(info.base_name)
        and regex.match(info.path[len(base):].lstrip("/"))
    )
    if not matches:
        raise InputError(f"no input file matches {uri!r}")
    return matches


def resolve_paths(path: str) -> list[str]:
    """The files behind a file, folder or glob, local or remote (folders only listed locally).

    Globs are expanded here because Ray's readers take them only as explicit file lists.
    Remote folders are handed to Ray as they are; it lists them itself.
    """
    if not _is_local(path):
        return _resolve_remote_glob(path) if any(c in path for c in _GLOB_CHARS) else [path]
    local = path.removeprefix("file://")
    if any(c in local for c in _GLOB_CHARS):
        found: list[str] = []
        for match in sorted(glob.glob(local, recursive=True)):
            found.extend(_files_under(Path(match)) if Path(match).is_dir() else [match])
        if not found:
            raise InputError(f"no input file matches {path!r}")
        return found
    p = Path(local)
    if p.is_dir():
        files = _files_under(p)
        if not files:
            raise InputError(f"input folder {path!r} holds no data files")
        return files
    if not p.exists():
        raise InputError(f"input path does not exist: {path!r}")
    return [local]


def parquet_rows(paths: list[str]) -> int:
    """Rows of local Parquet files from their footers; a file without one is named.

    Reading every footer up front costs milliseconds a file and turns a truncated or
    mislabelled file into an error that names it, instead of a failure deep in a read task.
    """
    import pyarrow.parquet as pq

    total = 0
    for p in paths:
        try:
            total += pq.read_metadata(p).num_rows
        except Exception as err:  # ArrowInvalid, OSError: both mean the file is unusable
            raise InputError(f"cannot read Parquet file {p!r} (truncated or not Parquet?): "
                             f"{err}") from err
    return total


def _csv_args(source: FileSource) -> dict[str, Any]:
    import pyarrow.csv as pacsv

    names = source.column_names
    read = pacsv.ReadOptions(
        column_names=names,
        skip_rows=1 if (names and source.header) else 0,
        autogenerate_column_names=not source.header and not names,
        encoding=source.encoding,
    )
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    convert = pacsv.ConvertOptions(
        column_types={name: types[kind] for name, kind in source.column_types.items()},
        **({"null_values": source.null_values, "strings_can_be_null": True}
           if source.null_values is not None else {}),
    )
    return {"parse_options": pacsv.ParseOptions(delimiter=source.delimiter),
            "read_options": read, "convert_options": convert}


def read_file_source(source: FileSource) -> Dataset:
    """Read the files of ``source`` into a Dataset (lazily; local Parquet footers are checked).

    Raises:
        InputError: the path matches nothing, or a Parquet file is unreadable; the message
            names the path.
    """
    import ray.data
    from ray.data.datasource import Partitioning, PartitionStyle

    paths = resolve_paths(source.path)
    if source.on_unreadable == "skip":
        paths = readable_files(source, paths)
    if source.format == "parquet" and all(_is_local(p) for p in paths):
        parquet_rows(paths)
    # Ray types the argument as Partitioning but reads None as "no partition columns".
    part: Any = Partitioning(PartitionStyle.HIVE) if source.partitioning == "hive" else None
    try:
        if source.format == "parquet":
            with _parquet_datasource_v1():
                return ray.data.read_parquet(paths, partitioning=part)
        if source.format == "csv":
            return ray.data.read_csv(paths, partitioning=part, **_csv_args(source))
        return ray.data.read_json(paths, partitioning=part)
    except Exception as err:  # Ray wraps reader errors; say which input it was.
        raise InputError(f"cannot read {source.format} input {source.path!r}: {err}") from err


@contextmanager
def _parquet_datasource_v1() -> Iterator[None]:
    """Plan ``read_parquet`` with Ray Data's first Parquet datasource.

    Ray 2.60 reads Parquet through DataSourceV2 by default, whose listing task costs about a
    second of wall time per read on a 2-core node (1.2-2.2 s per read of 50,000 rows against
    0.16 s for V1, measured in benchmarks/RESULTS.md); the pipeline reads its stage outputs
    a dozen times a run. The flag is read only while the read is planned, so it is set for
    that call alone rather than for the whole driver.
    """
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = before


def read_files(path: str, fmt: str) -> Dataset:
    """Read Parquet, CSV or JSON Lines from a file, folder or glob with default options."""
    return read_file_source(FileSource.model_validate({"path": path, "format": fmt}))


def file_fingerprint(source: FileSource) -> tuple[str, str]:
    """``(path, sha256)`` over the names and bytes of the local files (names only, remote)."""
    return source.path, fingerprint_files(resolve_paths(source.path))


def _open(path: str, seekable: bool = False) -> Any:
    """A stream of ``path``; ``seekable`` for Parquet, whose footer is read first."""
    import pyarrow.fs as pafs

    if _is_local(path):
        fs, inner = pafs.LocalFileSystem(), str(Path(path.removeprefix("file://")).resolve())
    else:
        fs, inner = pafs.FileSystem.from_uri(path)
    return fs.open_input_file(inner) if seekable else fs.open_input_stream(inner)


def _read_whole(path: str, source: FileSource) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    with _open(path, seekable=source.format == "parquet") as f:
        if source.format == "csv":
            reader = pacsv.open_csv(f, **_csv_args(source))
            # pyarrow reads text that is not valid in the encoding as bytes, which no stage
            # can use; say which column, and how to read it.
            binary = [fld.name for fld in reader.schema if pa.types.is_binary(fld.type)]
            if binary:
                raise ValueError(f"column {binary[0]!r} is not valid {source.encoding} text; "
                                 "set source.encoding to the file's encoding (e.g. latin-1)")
            for _ in reader:
                pass
        elif source.format == "json":
            pajson.read_json(f)
        else:
            for _ in pq.ParquetFile(f).iter_batches():
                pass


def _unreadable_reason(path: str, source: FileSource) -> str | None:
    import pyarrow as pa

    try:
        _read_whole(path, source)
    except (pa.ArrowException, OSError, ValueError) as err:
        return " ".join(str(err).split())
    return None


def readable_files(source: FileSource, paths: list[str]) -> list[str]:
    """The files of ``paths`` that read whole, checked by parallel Ray tasks; the others are
    logged by name with the reader's reason (``source.on_unreadable: skip``).

    Raises:
        InputError: no file can be read.
    """
    import ray

    check = ray.remote(num_cpus=0.5)(_unreadable_reason)  # leave room for the reads after
    reasons = ray.get([check.remote(p, source) for p in paths])
    bad = [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
    if len(bad) == len(paths):
        raise InputError(f"no {source.format} file of {source.path!r} can be read; first: "
                         f"{bad[0][0]}: {bad[0][1]}")
    for path, reason in bad:
        logger.warning("source.on_unreadable=skip: left out %s: %s", path, reason)
    if bad:
        logger.warning("source.on_unreadable=skip: read %d of %d files, left out %d",
                       len(paths) - len(bad), len(paths), len(bad))
    return [p for p, r in zip(paths, reasons, strict=True) if r is None]


def find_unreadable_file(source: FileSource, first: str | None = None) -> tuple[str, str] | None:
    """The first file of ``source`` that pyarrow cannot read, with the reader's reason.

    Ray's readers fail inside a task, and its message names the file for CSV only, without
    the reason (column, row, value), which does not survive the trip from the worker. Reading
    the files again here, on the error path only, names both; ``first`` (a file the error
    already named) is tried before the rest.
    """
    paths = resolve_paths(source.path)
    if first is not None:
        paths = [first, *(p for p in paths if p != first)]
    for path in paths:
        reason = _unreadable_reason(path, source)
        if reason is not None:
            return path, reason
    return None


class FileBackedReader(SourceReader[ConfigT]):
    """A kind whose data end up as files: read, fingerprinted and counted as those files.

    Subclasses say which files (:meth:`files`); a kind that generates or downloads its data
    writes it under ``work_dir`` there and is then read like ``kind: files``.
    """

    @abstractmethod
    def files(self) -> FileSource:
        """The files to read, as a files source (written first, for a generating kind)."""

    def read(self) -> Dataset:
        return read_file_source(self.files())

    def fingerprint(self, dataset: Dataset | None = None) -> tuple[str, str]:
        """Names and bytes of the files (names only, remote)."""
        return file_fingerprint(self.files())

    def rows(self, dataset: Dataset | None) -> int | None:
        """Local Parquet: from the footers. CSV, JSON and remote files: None, since counting
        would read everything an extra time; validation's ``rows_in`` counts them."""
        files = self.files()
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


class FileReader(FileBackedReader[FileSource]):
    """``kind: files``: Parquet, CSV or JSON Lines from a file, folder or glob."""

    kind = "files"
    config_type = FileSource

    def files(self) -> FileSource:
        return self.config

    def locations(self) -> list[Location]:
        return [Location("source.path", self.config.path)]

    def explain(self, err: BaseException) -> InputError | None:
        """Name the file a lazy read failed on, with the reader's reason.

        A corrupt file, or a value the CSV reader cannot convert, fails only when a later
        stage pulls the rows; Ray's message names the file for CSV only and loses the reason,
        so the files are read again here (on the error path only) to find both.
        """
        named = next((m.group(1) for e in error_chain(err)
                      if (m := _CSV_FAILURE.match(_first_line(e)))), None)
        bad = find_unreadable_file(self.config, named)
        if bad is None:
            return None
        hint = ""
        if "conversion error" in bad[1]:
            hint = (" (a column holds values of another type further down the file: name it "
                    "in source.column_types as string, and the data contract quarantines the "
                    "bad rows)")
        return InputError(f"cannot read {self.config.format} file {bad[0]}: {bad[1]}{hint}")
