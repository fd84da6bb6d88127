"""Output folders raypipe replaces: only its own, never one that holds the input, and whole.

``raypipe predict --overwrite`` once deleted whatever folder ``--output`` named, before
inference, even the folder its input lay in. The rules here, used by the CLI and the batch job:

- A folder raypipe wrote carries a marker file, :data:`MARKER` (``_RAYPIPE_OUTPUT``: a small
  JSON object saying what wrote it and when; Parquet readers skip names starting with ``_``).
  Only an empty folder or a marked one is ever replaced, so a mistyped ``--output ~`` is
  refused, not deleted.
- Input and output must not overlap (one inside the other, or the same). Local paths are
  compared resolved; remote URIs (``s3://``, ``gs://``...) as strings, by prefix.
- Predictions are written to a hidden sibling folder and swapped into place only once the run
  has finished (:func:`replacing`), so a failed run leaves the previous output as it was. On a
  local file system the swap is two renames (the old folder moves aside, the new one moves in,
  the old one is deleted). Object storage has no folder rename: there the old output's files
  are deleted, then the new ones moved in one by one (server-side copies), so the swap is not
  atomic and a failure during it can leave a partial output. The marker moves first, so a
  rerun with ``--overwrite`` replaces such a partial output.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs as pafs

from pipelines.errors import RaypipeError
from pipelines.storage.shared import local_path

__all__ = [
    "MARKER",
    "OutputFolderError",
    "check_output",
    "check_overlap",
    "check_replaceable",
    "read_marker",
    "relative_to",
    "replacing",
]

logger = logging.getLogger(__name__)

MARKER = "_RAYPIPE_OUTPUT"
"""File in every output folder raypipe wrote; only such a folder is ever replaced."""
_MARKER_MAX_BYTES = 64 * 1024
_GLOB_CHARS = "*?["


class OutputFolderError(RaypipeError, ValueError):
    """An output folder that must not be written or replaced; the message names the option."""


# --------------------------------------------------------------------------- locations


def _root(uri: str) -> str:
    """The folder a glob searches (``data/*.csv`` -> ``data``); other paths as they are."""
    first = min((uri.index(c) for c in _GLOB_CHARS if c in uri), default=-1)
    if first < 0:
        return uri
    cut = uri.rfind("/", 0, first)
    return uri[:cut] if cut > 0 else ("/" if cut == 0 else ".")


def _normalized(uri: str) -> str:
    """A local path resolved (``..``, links, relative), a remote URI without its trailing ``/``."""
    local = local_path(_root(uri))
    if local is not None:
        return str(local.expanduser().resolve())
    return _root(uri).rstrip("/")


def relative_to(uri: str, folder: str) -> str | None:
    """The part of ``uri`` below ``folder`` (``""`` for the folder itself); None when outside.

    Local paths are compared resolved, remote URIs as strings; a local path is never inside a
    remote folder or the other way round.
    """
    if (local_path(uri) is None) != (local_path(folder) is None):
        return None
    inner, outer = _normalized(uri), _normalized(folder)
    if inner == outer:
        return ""
    prefix = outer.rstrip("/") + "/"
    return inner[len(prefix):] if inner.startswith(prefix) else None


def check_overlap(input: str, output: str, *, input_field: str = "--input",
                  output_field: str = "--output") -> None:
    """Raise :class:`OutputFolderError` when ``input`` lies inside ``output`` or the other way
    round: replacing the output would delete the input, or the output would be read back."""
    if relative_to(input, output) is not None or relative_to(output, input) is not None:
        raise OutputFolderError(
            f"{input_field} {input} and {output_field} {output} overlap (one lies inside the "
            "other); write the predictions to a folder outside the input")


# --------------------------------------------------------------------------- the marker


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    local = local_path(uri)
    if local is not None:
        return pafs.LocalFileSystem(), str(local.expanduser().resolve())
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path.rstrip("/")


def read_marker(output: str) -> dict[str, Any] | None:
    """What the marker of ``output`` says; None when there is none or it is not raypipe's."""
    fs, path = _filesystem(output)
    try:
        with fs.open_input_stream(f"{path}/{MARKER}") as f:
            data = json.loads(f.read(_MARKER_MAX_BYTES))
    except (OSError, ValueError):  # missing, unreadable, or not JSON
        return None
    if isinstance(data, dict) and str(data.get("writer", "")).startswith("raypipe"):
        return data
    return None


def _entries(fs: pafs.FileSystem, path: str, uri: str, field: str) -> list[pafs.FileInfo]:
    """What the folder holds; empty when it does not exist."""
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.NotFound:
        return []
    if kind != pafs.FileType.Directory:
        raise OutputFolderError(f"{field}: {uri} is not a folder")
    return list(fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))


def check_replaceable(output: str, *, overwrite: bool, field: str = "--output",
                      how_to_replace: str = "pass --overwrite to replace it") -> None:
    """Raise :class:`OutputFolderError` unless ``output`` may be written: it is missing or
    empty, or ``overwrite`` is given and raypipe wrote it (it holds :data:`MARKER`)."""
    try:
        fs, path = _filesystem(output)
        entries = _entries(fs, path, output, field)
    except OutputFolderError:
        raise
    except (OSError, ValueError) as err:  # no credentials, no network, no permission
        raise OutputFolderError(f"{field}: cannot look into {output}: {err}") from None
    if not entries:
        return
    if not overwrite:
        raise OutputFolderError(f"{field}: output folder {output} is not empty; {how_to_replace}")
    if read_marker(output) is None:
        raise OutputFolderError(
            f"{field}: refusing to replace {output}: it holds files but no {MARKER} marker, so "
            "raypipe did not write it; choose another folder or empty it yourself")


def check_output(output: str, input: str | None, *, overwrite: bool,
                 output_field: str = "--output", input_field: str = "--input",
                 how_to_replace: str = "pass --overwrite to replace it") -> None:
    """Every check on an output folder, before Ray starts: see :func:`check_overlap` and
    :func:`check_replaceable` (``input`` None: a source that is not files)."""
    if input is not None:
        check_overlap(input, output, input_field=input_field, output_field=output_field)
    check_replaceable(output, overwrite=overwrite, field=output_field,
                      how_to_replace=how_to_replace)


# --------------------------------------------------------------------------- swap into place


def _sibling(uri: str, tag: str) -> str:
    """A hidden folder next to ``uri``: ``.<name>.raypipe-<tag>-<random>``."""
    local = local_path(uri)
    if local is not None:
        p = local.expanduser().resolve()
        return str(p.with_name(f".{p.name}.raypipe-{tag}-{secrets.token_hex(4)}"))
    parent, _, name = uri.rstrip("/").rpartition("/")
    if parent.endswith(":/"):
        raise OutputFolderError(f"{uri} is a bucket, not a folder in one; name a folder")
    return f"{parent}/.{name}.raypipe-{tag}-{secrets.token_hex(4)}"


def _write_marker(staging: str, writer: Mapping[str, Any]) -> None:
    fs, path = _filesystem(staging)
    body = {"writer": "raypipe", **writer, "created_at": datetime.now(UTC).isoformat()}
    with fs.open_output_stream(f"{path}/{MARKER}") as f:
        f.write(json.dumps(body, indent=2, default=str).encode())


def _swap(staging: str, output: str) -> None:
    fs, new = _filesystem(staging)
    _, dest = _filesystem(output)
    if local_path(output) is None:
        _swap_remote(fs, new, dest)
        return
    old = None
    if fs.get_file_info(dest).type != pafs.FileType.NotFound:
        old = _filesystem(_sibling(output, "old"))[1]
        fs.move(dest, old)
    try:
        fs.move(new, dest)
    except BaseException:
        if old is not None:
            fs.move(old, dest)
        raise
    if old is not None:
        try:
            fs.delete_dir(old)
        except OSError as err:  # the new output is in place; a leftover copy is no failure
            logger.warning("could not remove the previous output, moved to %s: %s", old, err)


def _swap_remote(fs: pafs.FileSystem, new: str, dest: str) -> None:
    # No folder rename on object storage: not atomic (see the module doc); the marker first.
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(new, recursive=True))
             if i.type == pafs.FileType.File]
    files.sort(key=lambda p: (p != f"{new}/{MARKER}", p))
    fs.delete_dir_contents(dest, missing_dir_ok=True)
    for src in files:
        fs.move(src, dest + src[len(new):])
    fs.delete_dir(new)


def _discard(staging: str) -> None:
    fs, path = _filesystem(staging)
    try:
        fs.delete_dir(path)
    except (FileNotFoundError, OSError) as err:  # cleanup must not hide why the run failed
        logger.warning("could not remove the unfinished output %s: %s", staging, err)


@contextmanager
def replacing(output: str, *, overwrite: bool, writer: Mapping[str, Any],
              field: str = "--output") -> Iterator[str]:
    """Yield a fresh sibling folder to write ``output``'s new contents into; when the block
    finishes, mark it as raypipe's (``writer``: what to say in :data:`MARKER`) and swap it
    into place. When the block raises, the new folder is removed and ``output`` is left as
    it was.

    :func:`check_replaceable` runs again just before the swap: the folder may have changed
    while the run wrote.
    """
    check_replaceable(output, overwrite=overwrite, field=field)
    staging = _sibling(output, "new")
    fs, path = _filesystem(staging)
    fs.create_dir(path, recursive=True)
    try:
        yield staging
        _write_marker(staging, writer)
        check_replaceable(output, overwrite=overwrite, field=field)
        _swap(staging, output)
    except BaseException:
        _discard(staging)
        raise

